"""Which of the engine's packages a Python has, and whether they meet the pins: the Engine Python check.

Blender runs this with the Python set as Engine Python. It is stdlib only and imports none of the packages it
looks at (their installed metadata is enough; importing torch alone takes seconds), so it answers on any Python,
even one the engine could never run on. It prints one JSON line in the engine's event format::

    python engine_probe.py '{"torch": "2.13.0", "numpy": "1.26.4"}'
    {"event": "check", "python": "3.11.7", "executable": "...", "packages": {"torch": {"version": "2.13.0+cpu",
     "pin": "2.13.0", "meets_pin": true}, "numpy": {"version": null, "pin": "1.26.4", "meets_pin": false}}}

With ``--text`` it prints one line per package instead, for a person at a terminal.
"""

import json
import sys


def installed_version(distribution):
    """The installed version of a distribution, or None; never imports it."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7 and older: report nothing rather than fail
        return None
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def meets_pin(version, pin):
    """A local build label counts as the pinned version: PyTorch's 2.13.0+cpu is torch 2.13.0."""
    return version is not None and version.split("+", 1)[0] == pin


def probe(pins):
    packages = {}
    for name, pin in pins.items():
        version = installed_version(name)
        packages[name] = {"version": version, "pin": pin, "meets_pin": meets_pin(version, pin)}
    return {
        "event": "check",
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "executable": sys.executable,
        "packages": packages,
    }


def main(argv):
    text = "--text" in argv
    arguments = [a for a in argv if a != "--text"]
    pins = json.loads(arguments[0]) if arguments else {}
    report = probe(pins)
    if not text:
        print(json.dumps(report), flush=True)
        return 0
    print("Python {} ({})".format(report["python"], report["executable"]))
    for name, found in report["packages"].items():
        state = "ok" if found["meets_pin"] else ("missing" if found["version"] is None else "differs from the pin")
        print("{} {} (pinned {}): {}".format(name, found["version"] or "-", found["pin"], state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
