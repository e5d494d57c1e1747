"""The runs behind the commands: inputs gathered, the core called, the outcome logged."""
