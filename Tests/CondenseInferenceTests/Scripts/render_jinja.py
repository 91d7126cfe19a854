#!/usr/bin/env python3
"""Renders chat templates as Hugging Face's apply_chat_template does (jinja2 with trim_blocks
and lstrip_blocks, tojson as json.dumps, raise_exception), for the Swift tests to compare with
Condense's interpreter.

    python3 render_jinja.py CASES.json     # [{"template": ..., "context": {...}}, ...]

Prints a JSON list: {"text": rendering} or {"error": message} per case.
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    out = []
    for case in json.load(open(sys.argv[1], encoding="utf-8")):
        try:
            out.append({"text": env.from_string(case["template"]).render(**case["context"])})
        except Exception as e:  # noqa: BLE001 - any failure is compared as a failure
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
