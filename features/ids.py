"""The person id as every layer accepts it: the trip contract's length rule, no control characters.

One definition for the trip feeds' ids, the requests' ids and the review store's texts (contract
section 3): a control character would reach an operator's terminal or reorder what it shows.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from commuter_badge.features.schema import MAX_ID_LENGTH

# Characters no id or review text may hold: C0 and C1 controls (NUL, ESC, CR, LF, tab, DEL, CSI)
# and the invisible bidirectional controls (the right-to-left override U+202E among them), which
# would reach an operator's terminal or reorder what it shows. Printable text of any script passes.
CONTROL_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
NO_CONTROLS = "no control or bidirectional-control characters (NUL, ESC, CR/LF, tab, U+202E...)"


def no_controls(value: str) -> str:
    """Refuse a text holding a control character; the message names it, never the text."""
    found = CONTROL_CHARACTERS.search(value)
    if found is not None:
        raise ValueError(
            f"holds the control character U+{ord(found.group()):04X} at position "
            f"{found.start() + 1}; {NO_CONTROLS} allowed"
        )
    return value


def printable(text: str) -> str:
    """`text` with every control character escaped (\\x1b, \\u202e), for a terminal or a log."""
    return CONTROL_CHARACTERS.sub(lambda m: _escape(m.group()), text)


def json_printable(text: str) -> str:
    """A JSON text with the control characters json.dumps leaves raw (C1, bidi) as \\u escapes."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


PersonId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_ID_LENGTH, pattern=r"\S"),
    AfterValidator(no_controls),
    Field(
        description=f"pseudonymous person key, as in the trip feeds; {NO_CONTROLS}",
        examples=["p1"],
    ),
]
