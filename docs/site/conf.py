"""Sphinx configuration of the collection's documentation site (`make docs`).

antsibull-docs writes the pages (`antsibull-docs collection --use-current`) beside index.rst in
.cache/docs/rst; Sphinx renders them with Ansible's theme and antsibull's Sphinx extension.
"""

project = "slipway.django"
copyright = "slipway developers"  # noqa: A001 (Sphinx's name)
title = "slipway.django documentation"
html_short_title = "slipway.django"
html_title = "slipway.django documentation"

extensions = ["sphinx_antsibull_ext"]
pygments_style = "ansible"
highlight_language = "YAML+Jinja"

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = "any"
# Every reference must resolve (warnings are errors in `make docs`)...
nitpicky = True
# ...except these labels of Ansible's own documentation, which antsibull-docs's pages name
# (module return values, plugin types, configuration, ansible.builtin's modules). They resolve
# through intersphinx to docs.ansible.com; the build reaches no web site, so it uses no
# intersphinx and renders them as text.
nitpick_ignore = [
    ("std:ref", "ansible_configuration_settings"),
    ("std:ref", "common_return_values"),
    ("std:ref", "action_plugins"),
    ("std:ref", "callback_plugins"),
]
nitpick_ignore_regex = [
    ("std:ref", r"ansible_collections\.ansible\.builtin\.[a-z_]+_(module|plugin)"),
]
