#!/usr/bin/env python3
"""Writes every ```ts block of the given Markdown files into OUT/snippet_<n>.ts, with the
package's import path pointed at ./pkg/index.js, so that scripts/test-web type-checks the
documentation's examples with `tsc --strict` against the built package.

    snippets.py OUT docs/WEB.md backend-js/package/README.md
"""

import os
import re
import sys

PACKAGE = "@compute-backends/backend-js"


def main():
    out, files = sys.argv[1], sys.argv[2:]
    n = 0
    for path in files:
        text = open(path, encoding="utf-8").read()
        for block in re.findall(r"^```ts\n(.*?)^```", text, re.S | re.M):
            n += 1
            code = block.replace(f'"{PACKAGE}"', '"./pkg/index.js"')
            with open(os.path.join(out, f"snippet_{n}.ts"), "w", encoding="utf-8") as f:
                f.write(f"// from {path}\n{code}\nexport {{}};\n")
    if n == 0:
        sys.exit("snippets.py: no ```ts block found")
    print(" ".join(f"snippet_{i}.ts" for i in range(1, n + 1)))


if __name__ == "__main__":
    main()
