"""A server's process tree and its memory, read from /proc (the admission test and the soak)."""

from __future__ import annotations

from pathlib import Path


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (BentoML's workers are not in its process group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def status_bytes(root: int, field: str) -> dict[int, int]:
    """A /proc/<pid>/status memory field (VmRSS, VmHWM, ...) in bytes, for each process of the tree."""
    out = {}
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    out[pid] = int(line.split()[1]) * 1024
        except OSError:
            continue
    return out


def bento_workers(root: int) -> list:
    """The BentoML worker processes below `root`, as psutil processes (a BentoML dependency)."""
    import psutil

    workers = []
    for pid in process_tree(root):
        try:
            proc = psutil.Process(pid)
            if "_bentoml_impl.worker" in " ".join(proc.cmdline()):
                workers.append(proc)
        except psutil.Error:
            continue
    return workers


def worker_connections(root: int, port: int) -> list[int]:
    """Established TCP connections on `port` that each BentoML worker below `root` holds."""
    import psutil

    counts = []
    for proc in bento_workers(root):
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        counts.append(
            sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in conns)
        )
    return sorted(counts)


def cpu_seconds(procs: list) -> list[float]:
    """User plus system CPU seconds of each process so far."""
    return [sum(p.cpu_times()[:2]) for p in procs]
