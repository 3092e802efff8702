#!/usr/bin/env python3
"""Turns every ```cpp block of the given Markdown files into one C++ translation unit.

Usage: extract_snippets.py OUT_DIR FILE.md...

Writes OUT_DIR/readme_snippets.cpp (and, for `file` snippets, OUT_DIR/<path>); the build compiles
and links it (target pikv_readme_snippets, test readme.snippets), so a snippet that stops compiling
fails the build. Standard library only.

The convention, for the Markdown author:

* Only blocks fenced ```cpp (or c++ / cxx) are compiled, and exactly as written. Everything else
  needs a language too (```text for output and diagrams, ```bash, ```cmake, ...): a fence without
  one is an error, so C++ cannot slip through unchecked.
* By default a block is the body of a function of its own, `void snippet_N()`, and must declare
  everything it uses. `#include` lines at its top are moved to the top of the translation unit.
* A block may say what it takes from its surroundings in an HTML comment on the line just before the
  fence (invisible in the rendered page, so the prose must name the same things):

    <!-- snippet: needs pikv::CausalLM& model, const at::Tensor& context -->
        the block is a function body with these parameters (a C++ parameter list);
    <!-- snippet: member needs const at::Tensor& ids, pikv::KVCache& cache -->
        the block is the body of a member function of a class implementing pikv::CausalLM (`*this`
        is the model, HookableModel's members such as attention() are in scope);
    <!-- snippet: namespace pikv -->
        namespace-scope code (types, functions, macros) written inside namespace pikv; compiled in
        a namespace of its own nested in pikv, so snippets never collide;
    <!-- snippet: file include/pikv/presses/vnorm.h -->
        a whole file: written to OUT_DIR/<path> (OUT_DIR/include is on the include path) and
        #included, in document order, at the top of the translation unit.
"""
import pathlib
import re
import sys

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$")
CPP = {"cpp", "c++", "cxx"}

# A stand-in model for `member` snippets: the pure virtuals of pikv::CausalLM, nothing else.
MEMBER_BASE = """\
struct Model : pikv::CausalLM {
  int64_t num_layers() const override { return 1; }
  at::Tensor forward(const at::Tensor&, pikv::KVCache&, const pikv::ForwardOptions& = {}) override {
    return {};
  }
  pikv::ModelShape shape() const override { return {}; }
  at::TensorOptions options() const override { return {}; }
"""


class SnippetError(Exception):
    pass


def blocks(path):
    """Yields (line, language, marker, text) for every fenced block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence, lang = i + 1, m.group(2), m.group(3).lower()
        if not lang:
            raise SnippetError(f"{path}:{start}: a code block without a language "
                               "(```cpp is compiled by tests/readme; use ```text for anything else)")
        marker = None
        if i > 0 and MARKER.match(lines[i - 1]):
            marker = MARKER.match(lines[i - 1]).group(1)
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise SnippetError(f"{path}:{start}: unterminated code block")
        i += 1
        if marker is not None and lang not in CPP:
            raise SnippetError(f"{path}:{start}: a snippet marker on a ```{lang} block")
        yield start, lang, marker, body


def parse_marker(where, marker):
    """'needs A, B' | 'member needs A, B' | 'member' | 'namespace pikv' | 'file PATH' -> (kind, arg)."""
    if marker is None:
        return "function", ""
    m = re.fullmatch(r"(member\s*)?(?:needs\s+(.+))?", marker)
    if m and (m.group(1) or m.group(2)):
        return ("member" if m.group(1) else "function"), (m.group(2) or "")
    m = re.fullmatch(r"namespace\s+([A-Za-z_][\w:]*)", marker)
    if m:
        return "namespace", m.group(1)
    m = re.fullmatch(r"file\s+([\w./-]+)", marker)
    if m and ".." not in m.group(1).split("/") and not m.group(1).startswith("/"):
        return "file", m.group(1)
    raise SnippetError(f"{where}: unknown snippet marker '{marker}' "
                       "(needs ... | member needs ... | namespace NS | file PATH)")


def split_includes(body):
    """Leading #include lines (and blank lines or comments among them) vs the rest."""
    includes, rest = [], list(body)
    while rest and (rest[0].strip().startswith("#include") or not rest[0].strip()):
        line = rest.pop(0)
        if line.strip():
            includes.append(line.strip())
    return includes, rest


def generate(out_dir, markdown_files):
    includes = ["#include <pikv/pikv.h>"]
    files, parts = [], []
    n = 0
    for md in markdown_files:
        for line, lang, marker, body in blocks(md):
            if lang not in CPP:
                continue
            n += 1
            where = f"{md.name}:{line}"
            kind, arg = parse_marker(where, marker)
            origin = f"// ---- snippet {n}: {where} ({marker or 'no marker'})"
            if kind == "file":
                target = out_dir / arg
                target.parent.mkdir(parents=True, exist_ok=True)
                content = f'#line {line + 1} "{md}"\n' + "\n".join(body) + "\n"
                if not target.exists() or target.read_text(encoding="utf-8") != content:
                    target.write_text(content, encoding="utf-8")
                rel = arg[len("include/"):] if arg.startswith("include/") else arg
                files.append(f"{origin}\n#include <{rel}>" if arg.startswith("include/")
                             else f'{origin}\n#include "{rel}"')
                continue
            head, rest = split_includes(body)
            includes += [h for h in head if h not in includes]
            code = f'#line {line + 1 + len(body) - len(rest)} "{md}"\n' + "\n".join(rest)
            if kind == "function":
                parts.append(f"{origin}\n[[maybe_unused]] static void snippet_{n}({arg}) {{\n{code}\n}}")
            elif kind == "member":
                parts.append(f"{origin}\nnamespace readme_snippet_{n} {{\n{MEMBER_BASE}"
                             f"  void snippet({arg});\n}};\nvoid Model::snippet({arg}) {{\n{code}\n}}\n"
                             f"}}  // namespace readme_snippet_{n}")
            else:
                parts.append(f"{origin}\nnamespace {arg} {{ namespace readme_snippet_{n} {{\n{code}\n"
                             f"}} }}  // namespace {arg}::readme_snippet_{n}")
    if n == 0:
        raise SnippetError("no ```cpp block found")
    tu = ["// Generated by tests/readme/extract_snippets.py from "
          + ", ".join(str(m) for m in markdown_files) + ": do not edit.",
          "// Every ```cpp block of the documentation, compiled as written (see the script for the",
          "// convention). The program does nothing: building it is the test.",
          *includes, "", *files, "", *parts, "",
          "int main() { return 0; }", ""]
    out = out_dir / "readme_snippets.cpp"
    content = "\n".join(tu)
    # Rewrite only on change, so an unrelated README edit does not recompile the LibTorch TU.
    if not out.exists() or out.read_text(encoding="utf-8") != content:
        out.write_text(content, encoding="utf-8")
    return n


def main(argv):
    if len(argv) < 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    out_dir = pathlib.Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        n = generate(out_dir, [pathlib.Path(a) for a in argv[2:]])
    except SnippetError as e:
        print(f"extract_snippets.py: {e}", file=sys.stderr)
        return 1
    print(f"extract_snippets.py: {n} C++ snippets -> {out_dir / 'readme_snippets.cpp'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
