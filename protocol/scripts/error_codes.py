#!/usr/bin/env python3
"""Regenerates src/codes/error_codes.rs from iggy_common's IggyError enum.

Usage: python3 protocol/scripts/error_codes.py ~/.cargo/registry/src/*/iggy_common-0.11.0 \
           > protocol/src/codes/error_codes.rs
"""
import re
import sys

src = open(f"{sys.argv[1]}/src/error/iggy_error.rs").read()
body = src[src.index("pub enum IggyError"):]
body = body[: body.index("\n}\n")]
items = re.findall(r"^\s{4}([A-Z][A-Za-z0-9]*)(?:\([^)]*\)|\s*\{[^}]*\})?\s*=\s*(\d+),", body, re.M)
print("// Generated from iggy_common 0.11.0 src/error/iggy_error.rs (enum IggyError): every")
print("// variant name and its code, in source order. Regenerate with protocol/scripts/error_codes.py.")
print("error_codes! {")
for name, code in items:
    print(f"    {name} = {code},")
print("}")
