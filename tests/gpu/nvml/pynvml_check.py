#!/usr/bin/env python3
"""NVML through pynvml (nvidia-ml-py), for the GPU check (scripts/gpu/30-nvml.sh).

    pynvml_check.py collect OUT.json [--alloc-mib N]
        Calls every NVML function that issue 5 covers, and those NCCL and
        XLA need (PCIe link, NvLink, fabric, field values), on every device
        and writes {key: value or "ERR:<code>"} as JSON. With --alloc-mib, first
        allocates N MiB through libcuda.so.1 (the same library path lookup
        as NVML), so that this process has a context and memory on device 0.
    pynvml_check.py compare NATIVE.json CLIENT.json --total-mib N --alloc-mib M
        Compares a client run with the native one: facts that cannot change
        must be equal, readings must succeed where they succeed natively,
        memory.total must be N MiB and this process must be listed with M MiB.
        Prints one line per difference and a summary; exit 1 on differences.
"""
import ctypes
import json
import os
import sys

MIB = 1 << 20


def call(fn, *args):
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        return "ERR:%d" % e.value
    except AttributeError as e:  # an older pynvml without this function
        return "MISSING:%s" % e


def text(v):
    return v.decode() if isinstance(v, bytes) else v


# NvLink links asked about (Hopper and Blackwell have 18) and capabilities
# (NVML_NVLINK_CAP_P2P_SUPPORTED .. NVML_NVLINK_CAP_VALID).
NVLINKS = 18
NVLINK_CAPS = 6
# nvmlDeviceGetFieldValues: (fieldId, scopeId) that NCCL, XLA and monitors
# ask, a field no NVML knows (9999) and the first id past nvml.h 13.5
# (310: the client answers ids it does not know NOT_SUPPORTED per field,
# without asking; this shows what native NVML answers instead).
STATIC_FIELDS = [
    (1, 0),    # NVML_FI_DEV_ECC_CURRENT
    (91, 0),   # NVML_FI_DEV_NVLINK_LINK_COUNT
    (164, 0),  # NVML_FI_DEV_NVLINK_GET_SPEED, link 0
    (165, 0),  # NVML_FI_DEV_NVLINK_GET_STATE, link 0
    (170, 0),  # NVML_FI_DEV_C2C_LINK_COUNT
    (171, 0),  # NVML_FI_DEV_C2C_LINK_GET_STATUS
    (172, 0),  # NVML_FI_DEV_C2C_LINK_GET_MAX_BW
    (9999, 0),
    (310, 0),
]
READING_FIELDS = [
    (82, 0),   # NVML_FI_DEV_MEMORY_TEMP
    (83, 0),   # NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION
    (94, 0),   # NVML_FI_DEV_PCIE_REPLAY_COUNTER
    (138, 0),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link 0
    (194, 0),  # NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT
    (308, 0),  # NVML_FI_DEV_GPU_TEMP
]


def field_values(n, h, fields):
    """[[nvmlReturn, valueType, value], ...] of one nvmlDeviceGetFieldValues
    call (the value only where the field succeeded), or its error."""
    vals = call(n.nvmlDeviceGetFieldValues, h, fields)
    if isinstance(vals, str):
        return vals
    members = ["dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal"]
    out = []
    for v in vals:
        ok = v.nvmlReturn == 0
        value = getattr(v.value, members[v.valueType]) if ok and v.valueType < len(members) else None
        out.append([v.nvmlReturn, v.valueType if ok else None, value])
    return out


def fabric(n, h, version):
    """nvmlDeviceGetGpuFabricInfo (version 0) or ...InfoV with a v2 or v3 struct."""
    def get():
        if version == 0:
            f = n.c_nvmlGpuFabricInfo_t()
            n.nvmlDeviceGetGpuFabricInfo(h, ctypes.byref(f))
        else:
            f = n.c_nvmlGpuFabricInfo_v2_t() if version == 2 else n.c_nvmlGpuFabricInfo_v3_t()
            n.nvmlDeviceGetGpuFabricInfoV(h, ctypes.byref(f))
        r = [bytes(f.clusterUuid).hex(), f.status, f.cliqueId, f.state]
        if version >= 2:
            r.append(f.healthMask)
        if version >= 3:
            r.append(f.healthSummary)
        return r
    return call(get)


def alloc(mib):
    """A context and `mib` MiB on device 0 through libcuda.so.1; kept alive."""
    cuda = ctypes.CDLL("libcuda.so.1")
    ctx = ctypes.c_void_p()
    ptr = ctypes.c_uint64()
    for name, args in [
        ("cuInit", (0,)),
        ("cuDevicePrimaryCtxRetain", (ctypes.byref(ctx), 0)),
        ("cuCtxSetCurrent", (ctx,)),
        ("cuMemAlloc_v2", (ctypes.byref(ptr), ctypes.c_size_t(mib * MIB))),
    ]:
        r = getattr(cuda, name)(*args)
        if r != 0:
            raise SystemExit("%s failed: %d" % (name, r))
    return cuda, ptr


def collect(out, alloc_mib):
    import pynvml as n

    keep = alloc(alloc_mib) if alloc_mib else None
    r = {}
    n.nvmlInit()
    r["driver_version"] = call(lambda: text(n.nvmlSystemGetDriverVersion()))
    r["nvml_version"] = call(lambda: text(n.nvmlSystemGetNVMLVersion()))
    r["cuda_driver_version"] = call(n.nvmlSystemGetCudaDriverVersion)
    r["cuda_driver_version_v2"] = call(n.nvmlSystemGetCudaDriverVersion_v2)
    r["process_name"] = call(lambda: text(n.nvmlSystemGetProcessName(os.getpid())))
    count = n.nvmlDeviceGetCount()
    r["count"] = count
    for i in range(count):
        h = n.nvmlDeviceGetHandleByIndex(i)
        d = "dev%d." % i
        uuid = text(n.nvmlDeviceGetUUID(h))
        r[d + "name"] = call(lambda: text(n.nvmlDeviceGetName(h)))
        r[d + "uuid"] = uuid
        r[d + "index"] = call(n.nvmlDeviceGetIndex, h)
        r[d + "serial"] = call(lambda: text(n.nvmlDeviceGetSerial(h)))
        r[d + "vbios"] = call(lambda: text(n.nvmlDeviceGetVbiosVersion(h)))
        pci = call(n.nvmlDeviceGetPciInfo, h)
        if isinstance(pci, str):
            r[d + "pci"] = pci
        else:
            r[d + "pci"] = [text(pci.busId), text(pci.busIdLegacy), pci.domain, pci.bus,
                            pci.device, pci.pciDeviceId, pci.pciSubSystemId]
            r[d + "by_pci_bus_id"] = call(
                lambda: "same" if n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByPciBusId(pci.busId)) == i else "other")
        r[d + "by_uuid"] = call(lambda: "same" if n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByUUID(uuid)) == i else "other")
        r[d + "brand"] = call(n.nvmlDeviceGetBrand, h)
        r[d + "architecture"] = call(n.nvmlDeviceGetArchitecture, h)
        r[d + "compute_capability"] = call(lambda: list(n.nvmlDeviceGetCudaComputeCapability(h)))
        r[d + "minor_number"] = call(n.nvmlDeviceGetMinorNumber, h)
        m = call(n.nvmlDeviceGetMemoryInfo, h)
        r[d + "memory"] = m if isinstance(m, str) else [m.total, m.free, m.used]
        m = call(n.nvmlDeviceGetMemoryInfo, h, n.nvmlMemory_v2)
        r[d + "memory_v2"] = m if isinstance(m, str) else [m.total, m.reserved, m.free, m.used]
        b = call(n.nvmlDeviceGetBAR1MemoryInfo, h)
        r[d + "bar1"] = b if isinstance(b, str) else [b.bar1Total, b.bar1Free, b.bar1Used]
        u = call(n.nvmlDeviceGetUtilizationRates, h)
        r[d + "utilization"] = u if isinstance(u, str) else [u.gpu, u.memory]
        r[d + "temperature"] = call(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU)
        r[d + "temperature_v"] = call(n.nvmlDeviceGetTemperatureV, h, n.NVML_TEMPERATURE_GPU)
        for t in range(4):
            r[d + "threshold%d" % t] = call(n.nvmlDeviceGetTemperatureThreshold, h, t)
        r[d + "power_usage"] = call(n.nvmlDeviceGetPowerUsage, h)
        r[d + "power_limit"] = call(n.nvmlDeviceGetPowerManagementLimit, h)
        r[d + "power_default_limit"] = call(n.nvmlDeviceGetPowerManagementDefaultLimit, h)
        r[d + "power_constraints"] = call(lambda: list(n.nvmlDeviceGetPowerManagementLimitConstraints(h)))
        r[d + "enforced_power_limit"] = call(n.nvmlDeviceGetEnforcedPowerLimit, h)
        for t in range(4):
            r[d + "clock%d" % t] = call(n.nvmlDeviceGetClockInfo, h, t)
            r[d + "max_clock%d" % t] = call(n.nvmlDeviceGetMaxClockInfo, h, t)
            r[d + "app_clock%d" % t] = call(n.nvmlDeviceGetApplicationsClock, h, t)
            r[d + "default_app_clock%d" % t] = call(n.nvmlDeviceGetDefaultApplicationsClock, h, t)
        r[d + "num_fans"] = call(n.nvmlDeviceGetNumFans, h)
        r[d + "fan_speed"] = call(n.nvmlDeviceGetFanSpeed, h)
        r[d + "pstate"] = call(n.nvmlDeviceGetPerformanceState, h)
        r[d + "power_state"] = call(n.nvmlDeviceGetPowerState, h)
        r[d + "ecc_mode"] = call(lambda: list(n.nvmlDeviceGetEccMode(h)))
        r[d + "ecc_errors"] = call(n.nvmlDeviceGetTotalEccErrors, h, 1, 0)
        r[d + "persistence"] = call(n.nvmlDeviceGetPersistenceMode, h)
        r[d + "compute_mode"] = call(n.nvmlDeviceGetComputeMode, h)
        r[d + "mig_mode"] = call(lambda: list(n.nvmlDeviceGetMigMode(h)))
        r[d + "display_mode"] = call(n.nvmlDeviceGetDisplayMode, h)
        r[d + "display_active"] = call(n.nvmlDeviceGetDisplayActive, h)
        procs = call(n.nvmlDeviceGetComputeRunningProcesses, h)
        r[d + "processes"] = procs if isinstance(procs, str) else [[p.pid, p.usedGpuMemory] for p in procs]
        g = call(n.nvmlDeviceGetGraphicsRunningProcesses, h)
        r[d + "graphics_processes"] = g if isinstance(g, str) else len(g)
        # NCCL and XLA: PCIe link, NvLink, fabric, field values, P2P.
        r[d + "max_pcie_gen"] = call(n.nvmlDeviceGetMaxPcieLinkGeneration, h)
        r[d + "max_pcie_width"] = call(n.nvmlDeviceGetMaxPcieLinkWidth, h)
        r[d + "curr_pcie_gen"] = call(n.nvmlDeviceGetCurrPcieLinkGeneration, h)
        r[d + "curr_pcie_width"] = call(n.nvmlDeviceGetCurrPcieLinkWidth, h)
        r[d + "pcie_tx"] = call(n.nvmlDeviceGetPcieThroughput, h, 0)
        r[d + "pcie_rx"] = call(n.nvmlDeviceGetPcieThroughput, h, 1)
        r[d + "pcie_counter2"] = call(n.nvmlDeviceGetPcieThroughput, h, 2)
        r[d + "nvlink_state"] = [call(n.nvmlDeviceGetNvLinkState, h, l) for l in range(NVLINKS + 1)]
        for l in range(NVLINKS + 1):
            r[d + "nvlink_caps%d" % l] = [call(n.nvmlDeviceGetNvLinkCapability, h, l, c)
                                          for c in range(NVLINK_CAPS + 1)]
        for v in (0, 2, 3):
            r[d + "fabric_v%d" % v] = fabric(n, h, v)
        r[d + "fields_static"] = field_values(n, h, STATIC_FIELDS)
        r[d + "fields_reading"] = field_values(n, h, READING_FIELDS)
        r[d + "fields_none"] = field_values(n, h, [])
        r[d + "p2p_self"] = [call(n.nvmlDeviceGetP2PStatus, h, h, c) for c in range(5)]
    r["pid"] = os.getpid()
    r["error_strings"] = {c: text(n.nvmlErrorString(c)) for c in list(range(31)) + [999]}
    n.nvmlShutdown()
    del keep
    with open(out, "w") as f:
        json.dump(r, f, indent=1, sort_keys=True)
    print("collected %d values from %d device(s)" % (len(r), count))


# Facts that cannot change between two runs a few seconds apart.
STATIC = ["name", "uuid", "index", "serial", "vbios", "pci", "by_pci_bus_id", "by_uuid", "brand",
          "architecture", "compute_capability", "minor_number", "threshold0", "threshold1",
          "threshold2", "threshold3", "power_default_limit", "power_constraints", "num_fans",
          "ecc_mode", "persistence", "compute_mode", "mig_mode", "display_mode", "display_active",
          "power_limit", "enforced_power_limit", "graphics_processes",
          "max_pcie_gen", "max_pcie_width", "pcie_counter2", "nvlink_state", "fabric_v0",
          "fabric_v2", "fabric_v3", "fields_static", "fields_none", "p2p_self"] + \
         ["nvlink_caps%d" % l for l in range(NVLINKS + 1)] + \
         ["max_clock%d" % t for t in range(4)] + ["default_app_clock%d" % t for t in range(4)]
# Readings: must succeed (or fail) as they do natively; values may move.
READINGS = ["utilization", "temperature", "temperature_v", "power_usage", "fan_speed", "pstate",
            "power_state", "ecc_errors", "bar1", "curr_pcie_gen", "curr_pcie_width", "pcie_tx",
            "pcie_rx"] + ["clock%d" % t for t in range(4)] + \
           ["app_clock%d" % t for t in range(4)]


def compare(native_path, client_path, total_mib, alloc_mib):
    nat = json.load(open(native_path))
    cli = json.load(open(client_path))
    bad = []
    checks = 0

    def same(key):
        nonlocal checks
        checks += 1
        if nat.get(key) != cli.get(key):
            bad.append("%s: native %r, client %r" % (key, nat.get(key), cli.get(key)))

    def same_status(key):
        nonlocal checks
        checks += 1
        n_err = isinstance(nat.get(key), str) and nat[key].startswith("ERR")
        c_err = isinstance(cli.get(key), str) and cli[key].startswith("ERR")
        if n_err != c_err or (n_err and nat[key] != cli[key]):
            bad.append("%s: native %r, client %r" % (key, nat.get(key), cli.get(key)))

    def expect(cond, what):
        nonlocal checks
        checks += 1
        if not cond:
            bad.append(what)

    for k in ["driver_version", "nvml_version", "cuda_driver_version", "cuda_driver_version_v2", "count"]:
        same(k)
    expect("python" in str(cli.get("process_name")), "process_name: %r" % cli.get("process_name"))
    for code, s in nat["error_strings"].items():
        checks += 1
        if cli["error_strings"].get(code) != s:
            bad.append("nvmlErrorString(%s): native %r, client %r" % (code, s, cli["error_strings"].get(code)))
    for i in range(min(nat["count"], cli["count"])):
        d = "dev%d." % i
        for k in STATIC:
            same(d + k)
        for k in READINGS:
            same_status(d + k)
        # Field readings: the same per-field status and type; values move.
        nf, cf = nat.get(d + "fields_reading"), cli.get(d + "fields_reading")
        if isinstance(nf, list) and isinstance(cf, list) and len(nf) == len(cf):
            for (f, _), a, b in zip(READING_FIELDS, nf, cf):
                checks += 1
                if a[:2] != b[:2]:
                    bad.append("%sfield %d: native %r, client %r" % (d, f, a, b))
        else:
            same(d + "fields_reading")
        mem = cli[d + "memory"]
        expect(isinstance(mem, list) and mem[0] == total_mib * MIB,
               "%smemory.total: %r, want %d MiB (the worker's TF_CUDA_MEMORY_LIMIT)" % (d, mem, total_mib))
        mem2 = cli[d + "memory_v2"]
        expect(isinstance(mem2, list) and mem2[0] == total_mib * MIB and mem2[1] == 0,
               "%smemory_v2: %r" % (d, mem2))
        if i == 0 and alloc_mib:
            expect(isinstance(mem, list) and mem[2] == alloc_mib * MIB and mem[1] == mem[0] - mem[2],
                   "%smemory used/free %r, want used %d MiB (this client's allocation)" % (d, mem, alloc_mib))
            own = [p for p in cli[d + "processes"] if p[0] == cli["pid"]] if isinstance(cli[d + "processes"], list) else []
            expect(own == [[cli["pid"], alloc_mib * MIB]],
                   "%sprocesses %r: want this pid %d with %d MiB" % (d, cli[d + "processes"], cli["pid"], alloc_mib))
            # Natively a container may show host pids (or none): a note, not a check.
            nat_own = [p for p in nat[d + "processes"] if p[0] == nat["pid"]] if isinstance(nat[d + "processes"], list) else []
            if len(nat_own) != 1:
                print("NOTE native process list lacks the own pid %d: %r" % (nat["pid"], nat.get(d + "processes")))
    for line in bad:
        print("DIFF " + line)
    print("%s %d of %d checks differ" % ("FAIL" if bad else "PASS", len(bad), checks))
    return 1 if bad else 0


def main(argv):
    def opt(name, default=0):
        return int(argv[argv.index(name) + 1]) if name in argv else default

    if len(argv) >= 3 and argv[1] == "collect":
        collect(argv[2], opt("--alloc-mib"))
        return 0
    if len(argv) >= 4 and argv[1] == "compare":
        return compare(argv[2], argv[3], opt("--total-mib"), opt("--alloc-mib"))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
