"""Upstream Nova's VMware driver under vcconform: ``vcconform_nova:NovaDriver`` (install with ``.[nova]``)."""

from vcconform_nova.adapter import NovaDriver, nova_version

__all__ = ["NovaDriver", "nova_version"]
