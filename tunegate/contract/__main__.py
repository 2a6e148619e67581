"""``python -m tunegate.contract``: the path of the schemathesis config that ships with the
package, for ``schemathesis --config-file "$(python -m tunegate.contract)" run …``."""

from tunegate.contract import CONFIG

print(CONFIG)
