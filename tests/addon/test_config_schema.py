"""The Home Assistant add-on's files against the rules the Supervisor checks them with.

Ported by hand (no code copied) from home-assistant/supervisor at commit
090ef31ec024952c2469ed5a7c9f3ce8c1a5499e (2026-08-21), where add-ons are now called apps:

- supervisor/apps/validate.py: _SCHEMA_APP_CONFIG (the keys of config.yaml and their
  values), RE_VOLUME, RE_SERVICE, RE_MACHINE, SCHEMA_ELEMENT;
- supervisor/apps/options.py: RE_SCHEMA_ELEMENT and how options are checked against the
  schema (AppOptions: each option's type, and every option without "?" present);
- supervisor/apps/const.py: RE_SLUG, MappingType, AppBackupMode;
- supervisor/const.py: ARCH_ALL_COMPAT, ARCH_DEPRECATED, AppStartup, AppBootConfig,
  AppStage, ROLE_ALL; supervisor/validate.py: network_port;
- supervisor/store/validate.py: SCHEMA_REPOSITORY_CONFIG (repository.yaml);
- supervisor/apps/build.py: the Dockerfile next to config.yaml, BUILD_ARCH.

One rule is stricter than the Supervisor's: it drops unknown keys silently
(extra=vol.REMOVE_EXTRA), so a misspelt key (`ingres: true`) would quietly turn a feature off.
Here an unknown key fails.

Run: python3 -m unittest discover -s tests/addon -v   (needs PyYAML: Debian python3-yaml)
"""

import copy
import os
import re
import unittest

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "home-assistant")
ADDON = os.path.join(ROOT, "teams-presence")

ARCH_ALL_COMPAT = ["aarch64", "amd64", "armhf", "armv7", "i386"]
ARCH_DEPRECATED = ["armhf", "armv7", "i386"]
STARTUP = ["initialize", "system", "services", "application", "once"]
BOOT = ["auto", "manual", "manual_only"]
STAGE = ["stable", "experimental", "deprecated"]
ROLES = ["default", "homeassistant", "backup", "manager", "admin"]
BACKUP = ["hot", "cold"]
MAP_TYPES = ["data", "config", "ssl", "local_apps", "backup", "share", "media",
             "homeassistant_config", "all_app_configs", "app_config",
             "addons", "all_addon_configs", "addon_config"]
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
RE_VOLUME = re.compile(
    r"^(data|config|ssl|local_apps|addons|backup|share|media|homeassistant_config"
    r"|all_app_configs|all_addon_configs|app_config|addon_config)(?::(rw|ro))?$")
RE_SERVICE = re.compile(r"^(?P<service>mqtt|mysql):(?P<rights>provide|want|need)$")
RE_WATCHDOG = re.compile(r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$")
RE_WEBUI = re.compile(r"^(?:https?|\[PROTO:\w+\]):\/\/\[HOST\]:\[PORT:\d+\].*$")
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool|email|url|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$")


class Invalid(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Invalid(msg)


def boolean(v):
    # vol.Boolean also takes "yes"/"on"/1; YAML already turns those into booleans.
    check(isinstance(v, bool), f"{v!r} is not a boolean")


def string(v):
    check(isinstance(v, str), f"{v!r} is not a string")


def one_of(values):
    def f(v):
        check(v in values, f"{v!r} is not one of {values}")
    return f


def list_of(item):
    def f(v):
        check(isinstance(v, list), f"{v!r} is not a list")
        for x in v:
            item(x)
    return f


def matches(rx):
    def f(v):
        check(isinstance(v, str) and rx.match(v), f"{v!r} does not match {rx.pattern}")
    return f


def port(v):
    check(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535, f"{v!r} is not a port")


def ingress_port(v):
    check(v == 0 or (isinstance(v, int) and 1 <= v <= 65535), f"{v!r} is not a port or 0")


def url(v):
    check(isinstance(v, str) and re.match(r"^[a-z][a-z0-9+.-]*://[^/\s]+", v), f"{v!r} is not a URL")


def version(v):
    check(isinstance(v, (str, int, float)) and str(v).strip(), f"{v!r} is not a version")


def timeout(v):
    check(isinstance(v, int) and 10 <= v <= 300, f"{v!r} is not 10..300")


def map_entry(v):
    if isinstance(v, str):
        check(RE_VOLUME.match(v), f"map entry {v!r} is not a known folder")
    else:
        check(isinstance(v, dict) and v.get("type") in MAP_TYPES, f"map entry {v!r} has no known type")
        unknown = set(v) - {"type", "read_only", "path"}
        check(not unknown, f"map entry keys {unknown} are unknown")


def schema_element(v):
    """SCHEMA_ELEMENT: a type string, a list of one (type or dict), or a dict of those."""
    if isinstance(v, str):
        check(RE_SCHEMA_ELEMENT.match(v), f"schema type {v!r} is unknown")
    elif isinstance(v, list):
        check(len(v) >= 1, "an empty schema list")
        for x in v:
            check(not isinstance(x, list), "a schema list may not contain a list")
            schema_element(x)
    elif isinstance(v, dict):
        for x in v.values():
            schema_element(x)
    else:
        raise Invalid(f"schema element {v!r} is neither a type, a list nor a dict")


def schema(v):
    if v is False:
        return
    check(isinstance(v, dict), "schema is not a mapping")
    for k, x in v.items():
        string(k)
        schema_element(x)


def dictionary(v):
    check(isinstance(v, dict), f"{v!r} is not a mapping")


def ports(v):
    check(isinstance(v, dict), "ports is not a mapping")
    for k, x in v.items():
        check(re.match(r"^\d+(?:/(?:tcp|udp))?$", str(k)), f"port {k!r}")
        check(x is None or isinstance(x, int), f"host port {x!r}")


# Every key _SCHEMA_APP_CONFIG knows, with what its value must be.
REQUIRED = {"name": string, "version": version, "slug": matches(RE_SLUG),
            "description": string, "arch": list_of(one_of(ARCH_ALL_COMPAT))}
OPTIONAL = {
    "machine": list_of(string), "url": url, "startup": one_of(STARTUP), "boot": one_of(BOOT),
    "init": boolean, "advanced": boolean, "stage": one_of(STAGE), "ports": ports,
    "ports_description": dictionary, "watchdog": matches(RE_WATCHDOG), "webui": matches(RE_WEBUI),
    "ingress": boolean, "ingress_port": ingress_port, "ingress_entry": string,
    "ingress_stream": boolean, "panel_icon": string, "panel_title": string,
    "panel_admin": boolean, "homeassistant": version, "host_network": boolean,
    "host_pid": boolean, "host_ipc": boolean, "host_uts": boolean, "host_dbus": boolean,
    "devices": list_of(string), "udev": boolean, "tmpfs": boolean, "map": list_of(map_entry),
    "environment": dictionary, "privileged": list_of(string), "apparmor": boolean,
    "full_access": boolean, "audio": boolean, "video": boolean, "gpio": boolean,
    "usb": boolean, "uart": boolean, "devicetree": boolean, "kernel_modules": boolean,
    "realtime": boolean, "hassio_api": boolean, "hassio_role": one_of(ROLES),
    "homeassistant_api": boolean, "stdin": boolean, "legacy": boolean, "docker_api": boolean,
    "auth_api": boolean, "services": list_of(matches(RE_SERVICE)), "discovery": list_of(string),
    "backup_exclude": list_of(string), "backup_pre": string, "backup_post": string,
    "backup": one_of(BACKUP), "options": dictionary, "schema": schema, "image": string,
    "ulimits": dictionary, "timeout": timeout, "journald": boolean,
    "breaking_versions": list_of(version),
}


def validate_config(config):
    check(isinstance(config, dict), "config.yaml is not a mapping")
    for key, rule in REQUIRED.items():
        check(key in config, f"required key {key!r} is missing")
        try:
            rule(config[key])
        except Invalid as e:
            raise Invalid(f"{key}: {e}") from None
    for key, value in config.items():
        if key in REQUIRED:
            continue
        check(key in OPTIONAL, f"unknown key {key!r} (the Supervisor would drop it silently)")
        try:
            OPTIONAL[key](value)
        except Invalid as e:
            raise Invalid(f"{key}: {e}") from None
    # Dynamic ingress ports (ingress_port: 0) come from 62000-65500: no mapped port there.
    if config.get("ingress") and config.get("ingress_port") == 0:
        for p in config.get("ports", {}):
            n = int(str(p).partition("/")[0])
            check(not 62000 <= n <= 65500, f"port {n} collides with dynamic ingress ports")
    validate_options(config.get("options", {}), config.get("schema", {}))


def option_value(typ, value, key):
    """AppOptions._single_validate for the types this add-on can use."""
    m = RE_SCHEMA_ELEMENT.match(typ)
    check(m, f"option {key!r}: unknown type {typ!r}")
    check(value is not None, f"option {key!r} is required")
    base = typ.rstrip("?")
    if base.startswith(("str", "password")):
        check(isinstance(value, str), f"option {key!r}: {value!r} is not a string")
        lo, hi = (m.group("s_min"), m.group("s_max")) if base.startswith("str") else (m.group("p_min"), m.group("p_max"))
        check(lo is None or len(value) >= int(lo), f"option {key!r} shorter than {lo}")
        check(hi is None or len(value) <= int(hi), f"option {key!r} longer than {hi}")
    elif base.startswith("int"):
        check(isinstance(value, int) and not isinstance(value, bool), f"option {key!r}: not an int")
    elif base.startswith("float"):
        check(isinstance(value, (int, float)), f"option {key!r}: not a number")
    elif base == "bool":
        check(isinstance(value, bool), f"option {key!r}: not a boolean")
    elif base == "port":
        port(value)
    elif base == "url":
        url(value)
    elif base.startswith("list("):
        choices = m.group("list").split("|")
        check(str(value) in choices, f"option {key!r}: {value!r} is not one of {choices}")
    elif base.startswith("match("):
        check(re.match(m.group("match"), str(value)), f"option {key!r}: {value!r} does not match")


def validate_options(options, raw_schema):
    """AppOptions.__call__ on the defaults: known keys, right types, required ones present."""
    check(isinstance(options, dict), "options is not a mapping")
    if raw_schema is False:
        return
    for key, value in options.items():
        check(key in raw_schema, f"option {key!r} has no schema entry")
        typ = raw_schema[key]
        if isinstance(typ, list):
            check(isinstance(value, list), f"option {key!r} is not a list")
            for v in value:
                option_value(typ[0], v, key)
        elif isinstance(typ, dict):
            validate_options(value, typ)
        else:
            option_value(typ, value, key)
    for key, typ in raw_schema.items():
        if key in options:
            continue
        t = typ[0] if isinstance(typ, list) and typ else typ
        check(isinstance(t, str) and t.endswith("?"),
              f"option {key!r} is required by the schema but has no default in options")


def validate_repository(repo):
    check(isinstance(repo, dict), "repository.yaml is not a mapping")
    check(isinstance(repo.get("name"), str), "repository.yaml needs a name")
    unknown = set(repo) - {"name", "url", "maintainer"}
    check(not unknown, f"repository.yaml: unknown keys {unknown}")
    if "url" in repo:
        url(repo["url"])


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class AddonConfig(unittest.TestCase):
    def setUp(self):
        self.config = load(os.path.join(ADDON, "config.yaml"))

    def test_the_config_passes_the_supervisor_rules(self):
        validate_config(self.config)

    def test_it_offers_the_three_architectures_the_static_binaries_cover(self):
        self.assertEqual(sorted(self.config["arch"]), ["aarch64", "amd64", "armv7"])
        # armv7 is still accepted, with a deprecation warning in the Supervisor's log.
        self.assertIn("armv7", ARCH_DEPRECATED)

    def test_the_status_page_is_behind_ingress_and_no_port_is_published(self):
        self.assertIs(self.config["ingress"], True)
        self.assertEqual(self.config["ingress_port"], 8099)
        self.assertNotIn("ports", self.config)
        self.assertNotIn("host_network", self.config)

    def test_mqtt_comes_from_home_assistants_broker(self):
        self.assertIn("mqtt:want", self.config["services"])

    def test_every_option_is_in_the_schema_and_in_run_sh(self):
        with open(os.path.join(ADDON, "run.sh"), encoding="utf-8") as f:
            run = f.read()
        for key in self.config["schema"]:
            self.assertIn(f"{key}", run, f"run.sh does not read option {key}")

    def test_a_planted_unknown_key_fails(self):
        bad = copy.deepcopy(self.config)
        bad["ingres"] = True
        with self.assertRaisesRegex(Invalid, "unknown key 'ingres'"):
            validate_config(bad)

    def test_wrong_values_fail_as_in_the_supervisor(self):
        cases = [
            ("arch", ["aarch64", "arm64"], "arch"),
            ("services", ["mqtt:wants"], "services"),
            ("slug", "teams presence", "slug"),
            ("startup", "later", "startup"),
            ("ingress_port", 70000, "ingress_port"),
            ("map", ["homeassistant:rw"], "map"),
            ("timeout", 5, "timeout"),
        ]
        for key, value, where in cases:
            bad = copy.deepcopy(self.config)
            bad[key] = value
            with self.assertRaisesRegex(Invalid, where, msg=key):
                validate_config(bad)
        for key in REQUIRED:
            bad = copy.deepcopy(self.config)
            del bad[key]
            with self.assertRaisesRegex(Invalid, "missing", msg=key):
                validate_config(bad)

    def test_options_must_fit_their_schema(self):
        bad = copy.deepcopy(self.config)
        bad["options"]["busylight"] = "sometimes"
        with self.assertRaisesRegex(Invalid, "busylight"):
            validate_config(bad)
        bad = copy.deepcopy(self.config)
        bad["schema"]["azure_client_id"] = "text"
        with self.assertRaisesRegex(Invalid, "unknown"):
            validate_config(bad)
        bad = copy.deepcopy(self.config)
        del bad["options"]["log_level"]
        with self.assertRaisesRegex(Invalid, "log_level"):
            validate_config(bad)

    def test_the_repository_file_and_the_dockerfile_are_where_the_supervisor_looks(self):
        validate_repository(load(os.path.join(ROOT, "repository.yaml")))
        with open(os.path.join(ADDON, "Dockerfile"), encoding="utf-8") as f:
            docker = f.read()
        self.assertIn("ARG BUILD_ARCH", docker)
        self.assertIn("bin/teams-presence-${BUILD_ARCH}", docker)
        self.assertTrue(os.access(os.path.join(ADDON, "run.sh"), os.X_OK))


if __name__ == "__main__":
    unittest.main()
