"""The Nova side of the adapter: one process that runs upstream Nova's VMwareVCDriver, one per cluster.

Started by vcconform_nova.adapter (``python -m vcconform_nova.service``); never imported by the test
process. It does what nova-compute does before its driver runs, and nothing more: native threading (no
eventlet), oslo.config set before Nova's vmwareapi modules are imported (their session defaults are read
at import), a lock path in a private temporary folder, VNC off, and a local database standing in for the
conductor, so that Nova's own calls through it (the service record VCState disables when vCenter is
unreachable) work as they do behind RPC. Then it answers requests, one thread each, as JSON lines on the
file descriptors it is given; Nova's log records travel the same way to the adapter's logging.

Nothing of Nova or oslo.vmware is patched: every answer is what VMwareVCDriver did.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import traceback
from typing import Any

PROTOCOL = 1
_write_lock = threading.Lock()
_out: Any = None


def send(message: dict[str, Any]) -> None:
    """One JSON line to the adapter (thread-safe)."""
    data = json.dumps(message, default=str) + "\n"
    with _write_lock:
        _out.write(data)
        _out.flush()


class Forward(logging.Handler):
    """Every log record of Nova and its libraries, sent to the adapter's logging."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format is still worth a line
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        send({"log": {"name": record.name, "level": record.levelno, "message": text}})


def error_of(e: BaseException) -> dict[str, Any]:
    """An exception as the adapter translates it: its class (with base classes), text and vSphere faults."""
    names = [f"{c.__module__}.{c.__qualname__}" for c in type(e).__mro__ if c is not object]
    faults = list(getattr(e, "fault_list", None) or [])
    return {"types": names, "message": str(e), "faults": [str(f) for f in faults],
            "where": "".join(traceback.format_exception(e)[-3:])[-2000:]}


class Service:
    """nova-compute's driver side for several clusters of one vCenter (one VMwareVCDriver each)."""

    def __init__(self, config: dict[str, Any], workdir: str) -> None:
        self.config = config
        self.workdir = workdir
        self.drivers: dict[str, Any] = {}  # cluster name -> VMwareVCDriver
        self.build_lock = threading.Lock()  # cluster_name is process-wide configuration
        self._configure()

    def _configure(self) -> None:
        # nova-compute's own first line (nova/cmd/__init__.py): native threading, no eventlet.
        os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")
        from nova import monkey_patch
        monkey_patch.patch(backend="threading")

        import nova.conf
        from nova import objects, rpc

        c = self.config
        conf = nova.conf.CONF
        conf([], project="nova", default_config_files=[])
        conf.set_override("host", c["service_id"])
        conf.set_override("lock_path", os.path.join(self.workdir, "locks"), "oslo_concurrency")
        conf.set_override("enabled", False, "vnc")
        conf.set_override("connection", f"sqlite:///{self.workdir}/nova.sqlite", "database")
        vmware = {"host_ip": c["host"], "host_port": c["port"], "host_username": c["username"],
                  "host_password": c["password"], "ca_file": c.get("ca_file"), "insecure": c.get("insecure", False),
                  "datastore_regex": c.get("datastore_regex"), **c.get("vmware_options", {})}
        for key, value in vmware.items():
            if value is not None:
                conf.set_override(key, value, "vmware")
        # An in-process messaging transport (oslo.messaging's fake driver): nova-compute initialises one,
        # and the service record below sends its notification through it.
        import oslo_messaging

        rpc.set_defaults(control_exchange="nova")
        oslo_messaging.get_rpc_transport(conf, url="fake:/").cleanup()  # registers the transport options
        conf.set_override("transport_url", "fake:/")
        rpc.init(conf)  # notifications: no driver configured, none sent
        objects.register_all()
        self._database()

    def _database(self) -> None:
        """The service record Nova's VCState reads and disables (through the conductor in production)."""
        import sqlalchemy
        from nova import context, objects
        from nova.db.main import models

        engine = sqlalchemy.create_engine(f"sqlite:///{self.workdir}/nova.sqlite")
        models.BASE.metadata.create_all(engine)
        engine.dispose()
        ctx = context.get_admin_context()
        objects.Service(ctx, host=self.config["service_id"], binary="nova-compute", topic="compute",
                        report_count=0).create()

    # -- requests ---------------------------------------------------------------------------------------

    def add_cluster(self, name: str) -> dict[str, Any]:
        """Construct VMwareVCDriver for one cluster (its name in cluster_name), as a nova-compute start."""
        import nova.conf
        from nova.virt import fake

        with self.build_lock:
            nova.conf.CONF.set_override("cluster_name", name, "vmware")
            from nova.virt.vmwareapi import driver as vmwareapi

            driver = vmwareapi.VMwareVCDriver(fake.FakeVirtAPI())
        driver.init_host(self.config["service_id"])
        self.drivers[name] = driver
        return {"nodes": driver.get_available_nodes()}

    def remove_cluster(self, name: str) -> None:
        driver = self.drivers.pop(name, None)
        if driver is not None:
            driver.cleanup_host(self.config["service_id"])

    def nodes(self, name: str, refresh: bool) -> list[str]:
        return list(self.drivers[name].get_available_nodes(refresh=refresh))

    def resources(self, name: str, node: str, inventory: bool) -> dict[str, Any]:
        driver = self.drivers[name]
        out = {"resources": driver.get_available_resource(node)}
        if inventory:
            from nova.compute import provider_tree

            tree = provider_tree.ProviderTree()
            tree.new_root(node, "00000000-0000-4000-8000-000000000000")
            try:
                driver.update_provider_tree(tree, node)
                out["inventory"] = tree.data(node).inventory
            except Exception as e:  # the compute node's figures stand; placement's update failed
                out["inventory_error"] = error_of(e)
        return out

    def _instance(self, spec: dict[str, Any], node: str | None) -> Any:
        from nova import context, objects
        from nova.compute import vm_states

        ctx = context.get_admin_context()
        flavor = objects.Flavor(name="vcconform", flavorid="vcconform", vcpus=spec["vcpus"],
                                memory_mb=spec["memory_mb"], root_gb=spec["root_gb"], ephemeral_gb=0, swap=0,
                                extra_specs={})
        return objects.Instance(
            ctx, uuid=spec["uuid"], display_name=spec["name"], hostname=spec["name"], vcpus=spec["vcpus"],
            memory_mb=spec["memory_mb"], root_gb=spec["root_gb"], ephemeral_gb=0, flavor=flavor,
            image_ref="", project_id="vcconform", user_id="vcconform", host=self.config["service_id"],
            node=node, metadata={}, system_metadata={}, config_drive="", key_data=None, task_state=None,
            vm_state=vm_states.BUILDING, power_state=0, os_type=None, availability_zone=None,
            launched_at=None, created_at=None, updated_at=None)

    def spawn(self, name: str, node: str, spec: dict[str, Any]) -> None:
        """Spawn with no image (image_ref empty, as for a volume-backed instance without volumes): Nova
        creates the VM with its root disk controller and no disk, then powers it on."""
        from nova import context, objects

        instance = self._instance(spec, node)
        self.drivers[name].spawn(context.get_admin_context(), instance, objects.ImageMeta.from_dict({}), [],
                                 None, {}, network_info=[], block_device_info=None)

    def destroy(self, name: str, spec: dict[str, Any], node: str | None) -> None:
        from nova import context

        self.drivers[name].destroy(context.get_admin_context(), self._instance(spec, node), [], None)

    def list_instances(self, name: str) -> list[str]:
        return list(self.drivers[name].list_instances())

    def get_info(self, name: str, spec: dict[str, Any]) -> str:
        from nova.compute import power_state

        state = self.drivers[name].get_info(self._instance(spec, None)).state
        return str(power_state.STATE_MAP.get(state, state))

    def close(self) -> None:
        for name in list(self.drivers):
            try:
                self.remove_cluster(name)
            except Exception as e:
                logging.getLogger(__name__).warning("logout of %s failed: %s", name, e)


def serve(infd: int, outfd: int) -> None:
    global _out
    _out = os.fdopen(outfd, "w", buffering=1)
    source = os.fdopen(infd, "r")
    config = json.loads(source.readline())
    root = logging.getLogger()
    root.handlers[:] = [Forward()]
    root.setLevel(int(config.get("log_level", logging.INFO)))
    # The levels oslo.log gives libraries in every OpenStack service (suds=INFO among them: at DEBUG suds
    # logs whole SOAP envelopes, the Login password included).
    from oslo_log import _options

    for item in _options.DEFAULT_LOG_LEVELS:
        name, _, level = item.partition("=")
        logging.getLogger(name).setLevel(level)
    workdir = tempfile.mkdtemp(prefix="vcconform-nova-")
    service: Service | None = None
    try:
        try:
            service = Service(config, workdir)
            send({"id": 0, "ok": {"protocol": PROTOCOL}})
        except BaseException as e:
            send({"id": 0, "error": error_of(e)})
            return
        for line in source:  # EOF: the adapter (or the whole test run) is gone
            request = json.loads(line)
            if request["op"] == "stop":
                break
            threading.Thread(target=_answer, args=(service, request), daemon=True).start()
        service.close()
        send({"id": -1, "ok": None})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _answer(service: Service, request: dict[str, Any]) -> None:
    try:
        result = getattr(service, request["op"])(**request.get("args", {}))
        send({"id": request["id"], "ok": result})
    except BaseException as e:
        send({"id": request["id"], "error": error_of(e)})


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
