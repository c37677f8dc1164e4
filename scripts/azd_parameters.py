#!/usr/bin/env python3
"""infra/main.parameters.json loaded the way azd >= 1.26 loads it, without azd or Azure.

A mirror of `BicepProvider.loadParameters` and `evalParamEnvSubst` in Azure/azure-dev at the
tag azure-dev-cli_1.26.0 (cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go), and of the
substitution library it calls, github.com/drone/envsubst v1.0.3 (parse/scan.go,
parse/parse.go, template.go, funcs.go), ported line for line below. In order:

1. The file is decoded with Go's encoding/json into `ArmParameterFile` (strict JSON: an
   unquoted `${...}` fails here with "error unmarshalling Bicep template parameters: invalid
   character '$' looking for beginning of value"; struct fields match keys without regard
   to case).
2. For each parameter, with its type taken from the template (`param <name> <type>` in
   main.bicep: azd reads the compiled ARM template, whose types these are):
   Path A, an array/object parameter whose value is a JSON string: envsubst on the string
   alone; omitted when it comes out empty and named an unset variable; else parsed as JSON
   ("substituting parameter 'x' (object): ...: value '...' is not valid JSON").
   Path B, everything else: the parameter re-encoded by json.Marshal (`{"value":...,
   "reference":null}`, Go's escaping), envsubst over that text, decoded again; omitted when
   the value is null, or an empty string that named an unset variable.
3. AZURE_PRINCIPAL_ID and AZURE_PRINCIPAL_TYPE come from azd's sign-in, not the environment;
   here they are the placeholders below.

Not mirrored (refused with a message rather than guessed): command substitution
(`secretOrRandomPassword`), and envsubst's pattern functions (`${x/a/b}`, `${x#p}`, ...,
which use Go's path.Match). Neither appears in this repository's file.

Usage: azd_parameters.py [--check] PARAMETERS_JSON MAIN_BICEP   (environment: the azd
environment). Prints the resolved and the omitted parameters as JSON; exit 1 with azd's
error text on failure. --check also refuses what ARM or azd would refuse next: parameters
main.bicep does not declare, values of the wrong type, required parameters left unresolved.

Checked against the real library: drone/envsubst v1.0.3 (Debian's
golang-github-drone-envsubst-dev, built with golang-go) and this port gave the same result,
error and unset-variable flag for 20,043 inputs (the hand-written cases of this file's
scenarios and random strings over `${}=:-?+,^#%/\\"[]`); see scripts/check-envsubst-port.sh.
"""

import json
import math
import os
import re
import sys
import unicodedata
from decimal import Decimal

PRINCIPAL_ID = "00000000-0000-0000-0000-00000000beef"
PRINCIPAL_TYPE = "User"


class AzdError(Exception):
    """What azd would stop with."""


class NotMirrored(Exception):
    """A construct this mirror does not reproduce."""


# --- drone/envsubst v1.0.3, parse/scan.go ----------------------------------------------------

EOF = "\0"
T_ILLEGAL, T_EOF, T_IDENT, T_LBRACK, T_RBRACK = range(5)
SCAN_IDENT, SCAN_LBRACK, SCAN_RBRACK, SCAN_ESCAPE = 1, 2, 4, 8


def _is_letter(r):
    return unicodedata.category(r).startswith("L")


def _is_digit(r):
    return unicodedata.category(r) == "Nd"


def accept_rune(r, i): return True
def accept_ident(r, i): return _is_letter(r) or _is_digit(r) or r == "_"
def accept_colon(r, i): return r == ":"
def accept_one_hash(r, i): return r == "#" and i == 1
def accept_not_closing(r, i): return r != "}"
def accept_hash_func(r, i): return r == "#" and i < 3
def accept_percent_func(r, i): return r == "%" and i < 3
def accept_one_equal(r, i): return i == 1 and r == "="
def accept_one_colon(r, i): return i == 1 and r == ":"
def reject_colon_close(r, i): return r != ":" and r != "}"
def accept_slash(r, i): return r == "/"
def accept_not_slash(r, i): return r != "/"
def accept_casing_func(r, i): return (r == "," or r == "^") and i < 3


def accept_default_func(r, i):
    if i == 1 and r == ":":
        return True
    return i == 2 and r in "=-?+"


def accept_replace_func(r, i):
    if i == 1 and r == "/":
        return True
    return i == 2 and r in "/#%"


class Scanner:
    """Code points stand in for Go's UTF-8 runes; the offsets the accept functions compare are
    only ever those of ASCII operators, where the two agree."""

    def __init__(self, buf):
        self.buf, self.pos, self.start, self.width = buf, 0, 0, 0
        self.mode, self.accept = 0, None

    def read(self):
        if self.pos >= len(self.buf):
            self.width = 0
            return EOF
        r = self.buf[self.pos]
        self.width = 1
        self.pos += 1
        return r

    def unread(self):
        self.pos -= self.width

    def skip(self):
        self.buf = self.buf[: self.pos - 1] + self.buf[self.pos:]

    def peek(self):
        r = self.read()
        self.unread()
        return r

    def string(self):
        return self.buf[self.start: self.pos]

    def scan(self):
        self.start = self.pos
        r = self.read()
        if r == EOF:
            return T_EOF
        if self.scan_lbrack(r):
            return T_LBRACK
        if self.scan_rbrack(r):
            return T_RBRACK
        if self.scan_ident(r):
            return T_IDENT
        return T_ILLEGAL

    def scan_ident(self, r):
        if self.mode & SCAN_IDENT == 0:
            return False
        if self.scan_escaped(r):
            self.skip()
        elif not self.accept(r, self.pos - self.start):
            return False
        while True:
            r = self.read()
            if r == EOF:
                self.unread()
                break
            if self.scan_lbrack(r):
                self.unread()
                self.unread()
                break
            if self.scan_escaped(r):
                self.skip()
                continue
            if not self.accept(r, self.pos - self.start):
                self.unread()
                break
        return True

    def scan_lbrack(self, r):
        if self.mode & SCAN_LBRACK == 0:
            return False
        if r == "$":
            if self.read() == "{":
                return True
            self.unread()
        return False

    def scan_rbrack(self, r):
        if self.mode & SCAN_RBRACK == 0:
            return False
        return r == "}"

    def scan_escaped(self, r):
        if self.mode & SCAN_ESCAPE == 0:
            return False
        if r == "$" and self.peek() == "$":
            return True
        if r != "\\":
            return False
        return self.peek() in ("/", "\\")


# --- parse/parse.go and parse/node.go --------------------------------------------------------

class Text:
    def __init__(self, value): self.value = value


class Func:
    def __init__(self, param, name="", args=None):
        self.param, self.name, self.args = param, name, args or []


class List:
    def __init__(self, *nodes): self.nodes = list(nodes)


EMPTY = Text("")


class BadSubstitution(Exception):
    pass


class Parser:
    def __init__(self, buf):
        self.s = Scanner(buf)

    def parse_any(self):
        s = self.s
        s.accept, s.mode = accept_rune, SCAN_IDENT | SCAN_LBRACK | SCAN_ESCAPE
        t = s.scan()
        if t == T_IDENT:
            left = Text(s.string())
            right = self.parse_any()
            return left if right is EMPTY else List(left, right)
        if t == T_EOF:
            return EMPTY
        if t == T_LBRACK:
            left = self.parse_func()
            right = self.parse_any()
            return left if right is EMPTY else List(left, right)
        raise BadSubstitution("bad substitution")

    def parse_func(self):
        s = self.s
        if s.peek() == "#":
            return self.parse_len_func()
        s.accept, s.mode = accept_ident, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("unable to parse variable name")
        name = s.string()
        p = s.peek()
        if p == ":":
            return self.parse_default_or_substr(name)
        if p == "=":
            return self.parse_default_func(name)
        if p in (",", "^"):
            return self.parse_casing_func(name)
        if p == "/":
            return self.parse_replace_func(name)
        if p == "#":
            return self.parse_remove_func(name, accept_hash_func)
        if p == "%":
            return self.parse_remove_func(name, accept_percent_func)
        s.accept, s.mode = accept_ident, SCAN_RBRACK
        if s.scan() == T_RBRACK:
            return Func(name)
        raise BadSubstitution("missing closing brace")

    def parse_param(self, accept, mode):
        s = self.s
        s.accept, s.mode = accept, mode | SCAN_LBRACK
        t = s.scan()
        if t == T_LBRACK:
            return self.parse_func()
        if t in (T_IDENT, T_RBRACK):
            return Text(s.string())
        raise BadSubstitution("unable to parse substitution within function")

    def parse_default_or_substr(self, name):
        s = self.s
        s.read()
        r = s.peek()
        s.unread()
        if r in "=-?+":
            return self.parse_default_func(name)
        return self.parse_substr_func(name)

    def parse_substr_func(self, name):
        s = self.s
        node = Func(name)
        s.accept, s.mode = accept_one_colon, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.name = s.string()
        node.args.append(self.parse_param(reject_colon_close, SCAN_IDENT))
        s.accept, s.mode = accept_colon, SCAN_IDENT | SCAN_RBRACK
        t = s.scan()
        if t == T_RBRACK:
            return node
        if t != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.args.append(self.parse_param(accept_not_closing, SCAN_IDENT))
        self.consume_rbrack()
        return node

    def parse_remove_func(self, name, accept):
        s = self.s
        node = Func(name)
        s.accept, s.mode = accept, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.name = s.string()
        node.args.append(self.parse_param(accept_not_closing, SCAN_IDENT))
        self.consume_rbrack()
        return node

    def parse_replace_func(self, name):
        s = self.s
        node = Func(name)
        s.accept, s.mode = accept_replace_func, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.name = s.string()
        node.args.append(self.parse_param(accept_not_slash, SCAN_IDENT | SCAN_ESCAPE))
        s.accept, s.mode = accept_slash, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        if s.peek() == "}":
            self.consume_rbrack()
            return node
        node.args.append(self.parse_param(accept_not_closing, SCAN_IDENT | SCAN_ESCAPE))
        self.consume_rbrack()
        return node

    def parse_default_func(self, name):
        s = self.s
        node = Func(name)
        s.accept = accept_default_func
        if s.peek() == "=":
            s.accept = accept_one_equal
        s.mode = SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("unable to parse default function")
        node.name = s.string()
        while True:
            if s.peek() == "}":
                self.consume_rbrack()
                return node
            node.args.append(self.parse_param(accept_not_closing, SCAN_IDENT))

    def parse_casing_func(self, name):
        s = self.s
        node = Func(name)
        s.accept, s.mode = accept_casing_func, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.name = s.string()
        self.consume_rbrack()
        return node

    def parse_len_func(self):
        s = self.s
        node = Func("")
        s.accept, s.mode = accept_one_hash, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.name = s.string()
        s.accept, s.mode = accept_ident, SCAN_IDENT
        if s.scan() != T_IDENT:
            raise BadSubstitution("bad substitution")
        node.param = s.string()
        self.consume_rbrack()
        return node

    def consume_rbrack(self):
        self.s.mode = SCAN_RBRACK
        if self.s.scan() != T_RBRACK:
            raise BadSubstitution("bad substitution")


# --- template.go and funcs.go ----------------------------------------------------------------

def _to_default(s, args):
    return "".join(args) if len(s) == 0 and args else s


def _first(s, f):
    return s if s == "" else f(s[0]) + s[1:]


def _substr(s, args):
    b = s.encode("utf-8")   # Go slices bytes
    try:
        pos = int(args[0])
    except ValueError:
        return s
    if pos < 0:
        pos = max(len(b) + pos, 0)
    if len(args) == 1:
        return b[pos:].decode("utf-8", "replace") if pos < len(b) else ""
    try:
        length = int(args[1])
    except ValueError:
        return s
    if pos + length >= len(b):
        return b[pos:].decode("utf-8", "replace") if pos < len(b) else ""
    return b[pos: pos + length].decode("utf-8", "replace")


def _function(name, nargs):
    if name in (",",):
        return lambda s, a: _first(s, str.lower)
    if name == ",,":
        return lambda s, a: s.lower()
    if name == "^":
        return lambda s, a: _first(s, str.upper)
    if name == "^^":
        return lambda s, a: s.upper()
    if name == "#" and nargs == 0:
        return lambda s, a: str(len(s.encode("utf-8")))
    if name == ":":
        return _substr
    if name in ("#", "##", "%", "%%", "/#", "/%", "/", "//"):
        raise NotMirrored(f"the envsubst function ${{...{name}...}} is not mirrored here")
    # "=", ":=", ":-", ":?", ":+", "-", "+" and anything else: toDefault (funcs.go, lookupFunc).
    return _to_default


def envsubst(text, mapping):
    """drone/envsubst's Eval: (result, error text or None)."""
    try:
        root = Parser(text).parse_any()
    except BadSubstitution as e:
        return text, str(e)
    out = []

    def ev(node, sink):
        if isinstance(node, Text):
            sink.append(node.value)
        elif isinstance(node, List):
            for n in node.nodes:
                ev(n, sink)
        else:
            args = []
            for n in node.args:
                buf = []
                ev(n, buf)
                args.append("".join(buf))
            v = mapping(node.param)
            sink.append(_function(node.name, len(args))(v, args))

    ev(root, out)
    return "".join(out), None


# --- Go's encoding/json, as far as azd's use of it shows -------------------------------------

def _go_error(text, err):
    """Go's json.Unmarshal message for the commonest syntax errors."""
    pos = getattr(err, "pos", 0)
    ch = text[pos] if pos < len(text) else ""
    if err.msg.startswith("Expecting value") and ch:
        return f"invalid character {_go_quote(ch)} looking for beginning of value"
    if not ch:
        return "unexpected end of JSON input"
    return f"invalid character {_go_quote(ch)} ({err.msg} at line {err.lineno} column {err.colno})"


def _go_quote(ch):
    return "'\\''" if ch == "'" else ("'" + ch + "'" if ch.isprintable() else repr(ch))


def _no_constants(name):
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def go_unmarshal(text):
    """json.Unmarshal into `any`: strict JSON (no NaN/Infinity), numbers as float64."""
    try:
        return json.loads(text, parse_constant=_no_constants, parse_int=float)
    except json.JSONDecodeError as e:
        raise ValueError(_go_error(text, e)) from None


def _go_float(f):
    """strconv.FormatFloat(f, 'f' or 'e', -1, 64) as encoding/json picks them."""
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mantissa, exp = repr(f).split("e")
        e = int(exp)
        return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    if f == int(f):
        return str(int(f))
    return format(Decimal(repr(f)), "f")


def _go_string(s):
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c in "<>&" or o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def go_marshal(v):
    """json.Marshal of a decoded `any` (maps with sorted keys, HTML-safe escaping)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise AzdError("json: unsupported value")
        return _go_float(v)
    if isinstance(v, str):
        return _go_string(v)
    if isinstance(v, list):
        return "[" + ",".join(go_marshal(x) for x in v) + "]"
    return "{" + ",".join(_go_string(k) + ":" + go_marshal(v[k]) for k in sorted(v)) + "}"


def _field(obj, name):
    """encoding/json matches struct fields to keys without regard to case (the last wins)."""
    found = None
    for k, v in obj.items():
        if k.lower() == name.lower():
            found = v
    return found


def _arm_parameter(raw, where):
    if not isinstance(raw, dict):
        raise AzdError(f"{where}: json: cannot unmarshal {type(raw).__name__} into Go value "
                       "of type azure.ArmParameter")
    return _field(raw, "value"), _field(raw, "reference")


# --- bicep_provider.go, loadParameters -------------------------------------------------------

def template_types(bicep_text):
    """`param <name> <type>` of main.bicep: what azd reads from the compiled template."""
    types = {}
    for m in re.finditer(r"^\s*param\s+([A-Za-z_][A-Za-z0-9_]*)\s+([A-Za-z]+)", bicep_text, re.M):
        types[m.group(1)] = m.group(2)
    return types


def load_parameters(params_text, types, env):
    """(resolved, omitted): what azd hands the deployment, and what it leaves out."""
    try:
        decoded = go_unmarshal(params_text)
    except ValueError as e:
        raise AzdError(f"error unmarshalling Bicep template parameters: {e}") from None
    if not isinstance(decoded, dict):
        raise AzdError("error unmarshalling Bicep template parameters: json: cannot unmarshal "
                       "into Go value of type azure.ArmParameterFile")
    parameters = _field(decoded, "parameters") or {}
    if not isinstance(parameters, dict):
        raise AzdError("error unmarshalling Bicep template parameters: json: cannot unmarshal "
                       "into Go struct field ArmParameterFile.parameters of type azure.ArmParameters")
    resolved, omitted = {}, []

    def subst(text, name):
        flags = {"unset": False}

        def mapping(var):
            if var == "AZURE_PRINCIPAL_ID":
                return PRINCIPAL_ID
            if var == "AZURE_PRINCIPAL_TYPE":
                return PRINCIPAL_TYPE
            if var not in env:
                flags["unset"] = True
                return ""
            return env[var]

        out, err = envsubst(text, mapping)
        if err:
            raise AzdError(f"substituting environment variables for {name}: {err}")
        return out, flags["unset"]

    for name, raw in parameters.items():
        value, reference = _arm_parameter(raw, name)
        ptype = types.get(name)
        if ptype in ("object", "array", "secureObject") and reference is None and isinstance(value, str):
            replaced, unset = subst(value, name)   # Path A
            if replaced == "" and unset:
                omitted.append(name)
                continue
            try:
                parsed = go_unmarshal(replaced)
            except ValueError as e:
                raise AzdError(f"substituting parameter '{name}' ({ptype}): {e}: value "
                               f"'{replaced}' is not valid JSON") from None
            if "secretOrRandomPassword" in replaced:
                raise NotMirrored("command substitution (secretOrRandomPassword)")
            resolved[name] = parsed
            continue
        encoded = "{" + '"value":' + go_marshal(value) + ',"reference":' + go_marshal(reference) + "}"
        replaced, unset = subst(encoded, name)     # Path B
        if "secretOrRandomPassword" in replaced:
            raise NotMirrored("command substitution (secretOrRandomPassword)")
        try:
            back = go_unmarshal(replaced)
        except ValueError as e:
            raise AzdError(f"error unmarshalling Bicep template parameters: {e}") from None
        value, reference = _arm_parameter(back, name)
        if value is None and reference is None:
            omitted.append(name)
            continue
        if value is not None and reference is not None:
            raise AzdError(f"parameter {name} has both a value and a keyvault reference")
        if isinstance(value, str) and value == "" and unset:
            omitted.append(name)
            continue
        resolved[name] = value if reference is None else {"reference": reference}
    return resolved, omitted


PY_TYPES = {"string": str, "securestring": str, "int": float, "bool": bool,
            "object": dict, "secureobject": dict, "array": list}


def required_parameters(bicep_text):
    """Parameters of main.bicep without a default: azd prompts for them when unresolved."""
    return [m.group(1) for m in re.finditer(
        r"^\s*param\s+([A-Za-z_][A-Za-z0-9_]*)\s+[A-Za-z]+\s*$", bicep_text, re.M)]


def check(resolved, omitted, params_names, bicep_text):
    """What ARM or azd would refuse beyond loading: parameters the template does not declare,
    values of the wrong type, and required parameters left for azd to prompt for."""
    types = template_types(bicep_text)
    problems = []
    for name in params_names:
        if name not in types:
            problems.append(f"parameter {name} is not declared in main.bicep (ARM refuses it)")
    for name, value in resolved.items():
        want = PY_TYPES.get(types.get(name, "").lower())
        if want is not None and not isinstance(value, want):
            problems.append(f"parameter {name}: {type(value).__name__} given to a "
                            f"{types[name]} parameter")
    for name in required_parameters(bicep_text):
        if name not in resolved:
            problems.append(f"parameter {name} has no default and no value: azd would prompt "
                            "for it (and fail with --no-prompt)")
    return problems


def main(argv):
    do_check = "--check" in argv
    argv = [a for a in argv if a != "--check"]
    if len(argv) != 2:
        print("usage: azd_parameters.py [--check] PARAMETERS_JSON MAIN_BICEP", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        params_text = f.read()
    with open(argv[1], encoding="utf-8") as f:
        bicep_text = f.read()
    types = template_types(bicep_text)
    try:
        resolved, omitted = load_parameters(params_text, types, dict(os.environ))
    except (AzdError, NotMirrored) as e:
        print(f"azd-parameters: {e}", file=sys.stderr)
        return 1
    if do_check:
        names = list(_field(json.loads(params_text), "parameters") or {})
        problems = check(resolved, omitted, names, bicep_text)
        for p in problems:
            print(f"azd-parameters: {p}", file=sys.stderr)
        if problems:
            return 1
    json.dump({"parameters": resolved, "omitted": sorted(omitted)}, sys.stdout, indent=1,
              sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
