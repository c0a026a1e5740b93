#!/usr/bin/env python3
"""Does an Envoy load the native build? `make native-matrix` runs it for each Envoy of NATIVE_REFUSED_ENVOYS.

    tools/native_load_check.py ENVOY SO

Validates native/envoy.yaml (``envoy --mode validate``) with the module given by ``name`` and
``$ENVOY_DYNAMIC_MODULES_SEARCH_PATH`` (the form every Envoy with dynamic modules reads; ``module`` is
newer) and prints one line: ``loads`` or ``refused: <Envoy's reason>``. Exit status 0 either way; 2 when
Envoy could not be run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    envoy, so = sys.argv[1], os.path.abspath(sys.argv[2])
    boot = yaml.safe_load((REPO / "native" / "envoy.yaml").read_text())
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][1]["typed_config"]
    dm = hcm["http_filters"][0]["typed_config"]["dynamic_module_config"]
    dm.pop("module")
    name = Path(so).name
    dm["name"] = name[len("lib"):-len(".so")]
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(so, Path(tmp) / name)
        config = Path(tmp) / "envoy.yaml"
        config.write_text(yaml.safe_dump(boot))
        try:
            run = subprocess.run([envoy, "-c", str(config), "--mode", "validate", "-l", "info"],
                                 capture_output=True, text=True, timeout=120,
                                 env=dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=tmp))
        except OSError as e:
            print(f"cannot run {envoy}: {e}", file=sys.stderr)
            return 2
    out = run.stdout + run.stderr
    if run.returncode == 0 and "OK" in out:
        print("loads")
    else:
        m = re.search(r"error initializing configuration '[^']*': (.*)", out)
        reason = (m.group(1) if m else out.strip().splitlines()[-1]).replace(tmp, "<search path>")
        print(f"refused: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
