"""``portanet info``: the backends, their versions and devices, the selected one."""

from ..backend import describe_backends, get_backend, step_threads
from ..errors import PortanetError


def cmd_info(args):
    """Print every backend (installed or not, version, devices), the selected one, and how
    many threads its eager training steps use."""
    for row in describe_backends():
        state = f"{row['version']:<10} devices: {', '.join(row['devices']) or '-'}" \
            if row["installed"] else "not installed"
        print(f"{row['backend']:<17} {state}" + (f"   ({row['note']})" if "note" in row else ""))
    try:
        backend = get_backend()
    except PortanetError as exc:
        print(f"selected: unusable: {exc}")
        return 0
    print(f"selected: {backend}")
    threads = step_threads(backend.name)  # a bad PORTANET_STEP_THREADS says so here
    if threads > 1:
        print(f"eager training steps split large batches between {threads} threads "
              "(PORTANET_STEP_THREADS)")
    return 0
