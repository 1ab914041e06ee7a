/* End-to-end check of the remoted NVML, run through our libnvidia-ml.so.1
 * (found with dlopen, as nvidia-smi, pynvml and PyTorch find it) against
 * tf-test-worker, whose NVML answers are FIXED TEST VALUES (see
 * crates/tf-test-worker/src/host_nvml.rs). Also uses libcuda.so.1 to check
 * that NVML and CUDA agree on devices and share one session.
 *
 * usage: nvml all TOTAL_MIB          every function; TOTAL_MIB is the
 *                                    expected nvmlMemory_t.total
 *        nvml expect-init-error CODE nvmlInit_v2 must fail with CODE
 *        nvml lost                   init, print "ready", wait for a line on
 *                                    stdin (the worker is killed meanwhile),
 *                                    then calls must fail with GPU_IS_LOST
 *        nvml requests               the calls whose request counts the test
 *                                    reads from TF_CALL_STATS: repeated NvLink
 *                                    capabilities (cached), repeated readings
 *                                    (not cached), a field list of 150
 * Exit 0 and "PASS" on success; on failure one line saying what differed. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int ret_t;
typedef void *dev_t_;
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } mem2_t;
typedef struct { unsigned long long total, free, used; } bar1_t;
typedef struct { unsigned gpu, memory; } util_t;
typedef struct { unsigned version; int sensor; int temperature; } temp_v_t;
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} pci_t;
typedef struct { unsigned pid; unsigned long long used; } proc1_t;
typedef struct { unsigned pid; unsigned long long used; unsigned gi, ci; } proc2_t;
typedef struct {
    unsigned char clusterUuid[16];
    int status;
    unsigned cliqueId;
    unsigned char state;
} fabric_t;
typedef struct {
    unsigned version;
    unsigned char clusterUuid[16];
    int status;
    unsigned cliqueId;
    unsigned char state;
    unsigned healthMask;
} fabric2_t;
typedef struct {
    unsigned version;
    unsigned char clusterUuid[16];
    int status;
    unsigned cliqueId;
    unsigned char state;
    unsigned healthMask;
    unsigned char healthSummary;
} fabric3_t;
typedef union {
    double dVal;
    int siVal;
    unsigned uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    unsigned short usVal;
} value_t;
typedef struct {
    unsigned fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    int nvmlReturn;
    value_t value;
} field_t;

enum { OK = 0, UNINIT = 1, INVALID = 2, NOT_SUPPORTED = 3, NOT_FOUND = 6, INSUFFICIENT = 7,
       GPU_IS_LOST = 15, VERSION_MISMATCH = 25 };
#define MIB (1024ull * 1024ull)

static void *nvml, *cuda;
#define FN(ret, name, args) static ret(*name) args;
#define LOAD(lib, name)                                                        \
    do {                                                                       \
        *(void **)&name = dlsym(lib, #name);                                   \
        if (!name) { printf("FAIL missing export %s\n", #name); exit(10); }    \
    } while (0)
#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } \
    } while (0)
/* call must return want */
#define RET(want, call)                                                        \
    do {                                                                       \
        int r_ = (call);                                                       \
        EXPECT(r_ == (want), "%s -> %d (%s), want %d", #call, r_, nvmlErrorString(r_), (want)); \
    } while (0)

FN(ret_t, nvmlInit, (void))
FN(ret_t, nvmlInit_v2, (void))
FN(ret_t, nvmlInitWithFlags, (unsigned))
FN(ret_t, nvmlShutdown, (void))
FN(const char *, nvmlErrorString, (ret_t))
FN(ret_t, nvmlSystemGetDriverVersion, (char *, unsigned))
FN(ret_t, nvmlSystemGetNVMLVersion, (char *, unsigned))
FN(ret_t, nvmlSystemGetCudaDriverVersion, (int *))
FN(ret_t, nvmlSystemGetCudaDriverVersion_v2, (int *))
FN(ret_t, nvmlSystemGetProcessName, (unsigned, char *, unsigned))
FN(ret_t, nvmlDeviceGetCount, (unsigned *))
FN(ret_t, nvmlDeviceGetCount_v2, (unsigned *))
FN(ret_t, nvmlDeviceGetHandleByIndex, (unsigned, dev_t_ *))
FN(ret_t, nvmlDeviceGetHandleByIndex_v2, (unsigned, dev_t_ *))
FN(ret_t, nvmlDeviceGetHandleByUUID, (const char *, dev_t_ *))
FN(ret_t, nvmlDeviceGetHandleByPciBusId, (const char *, dev_t_ *))
FN(ret_t, nvmlDeviceGetHandleByPciBusId_v2, (const char *, dev_t_ *))
FN(ret_t, nvmlDeviceGetIndex, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetName, (dev_t_, char *, unsigned))
FN(ret_t, nvmlDeviceGetUUID, (dev_t_, char *, unsigned))
FN(ret_t, nvmlDeviceGetSerial, (dev_t_, char *, unsigned))
FN(ret_t, nvmlDeviceGetVbiosVersion, (dev_t_, char *, unsigned))
FN(ret_t, nvmlDeviceGetPciInfo, (dev_t_, pci_t *))
FN(ret_t, nvmlDeviceGetPciInfo_v2, (dev_t_, pci_t *))
FN(ret_t, nvmlDeviceGetPciInfo_v3, (dev_t_, pci_t *))
FN(ret_t, nvmlDeviceGetBrand, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetArchitecture, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetCudaComputeCapability, (dev_t_, int *, int *))
FN(ret_t, nvmlDeviceGetMinorNumber, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetMemoryInfo, (dev_t_, mem_t *))
FN(ret_t, nvmlDeviceGetMemoryInfo_v2, (dev_t_, mem2_t *))
FN(ret_t, nvmlDeviceGetBAR1MemoryInfo, (dev_t_, bar1_t *))
FN(ret_t, nvmlDeviceGetUtilizationRates, (dev_t_, util_t *))
FN(ret_t, nvmlDeviceGetTemperature, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetTemperatureV, (dev_t_, temp_v_t *))
FN(ret_t, nvmlDeviceGetTemperatureThreshold, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetPowerUsage, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetPowerManagementLimit, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetPowerManagementDefaultLimit, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetPowerManagementLimitConstraints, (dev_t_, unsigned *, unsigned *))
FN(ret_t, nvmlDeviceGetEnforcedPowerLimit, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetClockInfo, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetMaxClockInfo, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetApplicationsClock, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetDefaultApplicationsClock, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetFanSpeed, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetFanSpeed_v2, (dev_t_, unsigned, unsigned *))
FN(ret_t, nvmlDeviceGetNumFans, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetPerformanceState, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetPowerState, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetEccMode, (dev_t_, int *, int *))
FN(ret_t, nvmlDeviceGetTotalEccErrors, (dev_t_, int, int, unsigned long long *))
FN(ret_t, nvmlDeviceGetPersistenceMode, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetComputeMode, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetMigMode, (dev_t_, unsigned *, unsigned *))
FN(ret_t, nvmlDeviceGetDisplayMode, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetDisplayActive, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetVirtualizationMode, (dev_t_, int *))
FN(ret_t, nvmlDeviceGetMaxMigDeviceCount, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceValidateInforom, (dev_t_))
FN(ret_t, nvmlDeviceIsMigDeviceHandle, (dev_t_, unsigned *))
FN(ret_t, nvmlEventSetCreate, (void **))
FN(ret_t, nvmlDeviceRegisterEvents, (dev_t_, unsigned long long, void *))
FN(ret_t, nvmlEventSetWait_v2, (void *, void *, unsigned))
FN(ret_t, nvmlEventSetFree, (void *))
FN(ret_t, nvmlDeviceGetComputeRunningProcesses, (dev_t_, unsigned *, proc1_t *))
FN(ret_t, nvmlDeviceGetComputeRunningProcesses_v2, (dev_t_, unsigned *, proc2_t *))
FN(ret_t, nvmlDeviceGetComputeRunningProcesses_v3, (dev_t_, unsigned *, proc2_t *))
FN(ret_t, nvmlDeviceGetGraphicsRunningProcesses, (dev_t_, unsigned *, proc1_t *))
FN(ret_t, nvmlDeviceGetGraphicsRunningProcesses_v2, (dev_t_, unsigned *, proc2_t *))
FN(ret_t, nvmlDeviceGetGraphicsRunningProcesses_v3, (dev_t_, unsigned *, proc2_t *))
FN(ret_t, nvmlDeviceGetMPSComputeRunningProcesses_v3, (dev_t_, unsigned *, proc2_t *))
FN(ret_t, nvmlInternalGetExportTable, (const void **, const unsigned char *))
FN(ret_t, nvmlDeviceGetMaxPcieLinkGeneration, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetMaxPcieLinkWidth, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetCurrPcieLinkGeneration, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetCurrPcieLinkWidth, (dev_t_, unsigned *))
FN(ret_t, nvmlDeviceGetPcieThroughput, (dev_t_, int, unsigned *))
FN(ret_t, nvmlDeviceGetNvLinkState, (dev_t_, unsigned, int *))
FN(ret_t, nvmlDeviceGetNvLinkCapability, (dev_t_, unsigned, int, unsigned *))
FN(ret_t, nvmlDeviceGetP2PStatus, (dev_t_, dev_t_, int, int *))
FN(ret_t, nvmlDeviceGetGpuFabricInfo, (dev_t_, fabric_t *))
FN(ret_t, nvmlDeviceGetGpuFabricInfoV, (dev_t_, fabric3_t *))
FN(ret_t, nvmlDeviceGetFieldValues, (dev_t_, int, field_t *))
FN(int, cuInit, (unsigned))
FN(int, cuDeviceGetCount, (int *))
FN(int, cuDeviceGet, (int *, int))
FN(int, cuDeviceGetName, (char *, int, int))
FN(int, cuDeviceGetUuid, (unsigned char *, int))
FN(int, cuDeviceGetAttribute, (int *, int, int))
FN(int, cuDevicePrimaryCtxRetain, (void **, int))
FN(int, cuDevicePrimaryCtxRelease_v2, (int))
FN(int, cuCtxSetCurrent, (void *))
FN(int, cuMemAlloc_v2, (unsigned long long *, size_t))
FN(int, cuMemFree_v2, (unsigned long long))

static void load(void) {
    nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!nvml) { printf("FAIL dlopen libnvidia-ml.so.1: %s\n", dlerror()); exit(10); }
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    EXPECT(dlsym(nvml, "TENSOR_FUSION_CLIENT") != NULL, "libnvidia-ml.so.1 is not the tensor-fusion client");
    LOAD(nvml, nvmlInit); LOAD(nvml, nvmlInit_v2); LOAD(nvml, nvmlInitWithFlags); LOAD(nvml, nvmlShutdown);
    LOAD(nvml, nvmlErrorString); LOAD(nvml, nvmlSystemGetDriverVersion); LOAD(nvml, nvmlSystemGetNVMLVersion);
    LOAD(nvml, nvmlSystemGetCudaDriverVersion); LOAD(nvml, nvmlSystemGetCudaDriverVersion_v2);
    LOAD(nvml, nvmlSystemGetProcessName); LOAD(nvml, nvmlDeviceGetCount); LOAD(nvml, nvmlDeviceGetCount_v2);
    LOAD(nvml, nvmlDeviceGetHandleByIndex); LOAD(nvml, nvmlDeviceGetHandleByIndex_v2);
    LOAD(nvml, nvmlDeviceGetHandleByUUID); LOAD(nvml, nvmlDeviceGetHandleByPciBusId);
    LOAD(nvml, nvmlDeviceGetHandleByPciBusId_v2); LOAD(nvml, nvmlDeviceGetIndex); LOAD(nvml, nvmlDeviceGetName);
    LOAD(nvml, nvmlDeviceGetUUID); LOAD(nvml, nvmlDeviceGetSerial); LOAD(nvml, nvmlDeviceGetVbiosVersion);
    LOAD(nvml, nvmlDeviceGetPciInfo); LOAD(nvml, nvmlDeviceGetPciInfo_v2); LOAD(nvml, nvmlDeviceGetPciInfo_v3);
    LOAD(nvml, nvmlDeviceGetBrand); LOAD(nvml, nvmlDeviceGetArchitecture);
    LOAD(nvml, nvmlDeviceGetCudaComputeCapability); LOAD(nvml, nvmlDeviceGetMinorNumber);
    LOAD(nvml, nvmlDeviceGetMemoryInfo); LOAD(nvml, nvmlDeviceGetMemoryInfo_v2);
    LOAD(nvml, nvmlDeviceGetBAR1MemoryInfo); LOAD(nvml, nvmlDeviceGetUtilizationRates);
    LOAD(nvml, nvmlDeviceGetTemperature); LOAD(nvml, nvmlDeviceGetTemperatureV);
    LOAD(nvml, nvmlDeviceGetTemperatureThreshold); LOAD(nvml, nvmlDeviceGetPowerUsage);
    LOAD(nvml, nvmlDeviceGetPowerManagementLimit); LOAD(nvml, nvmlDeviceGetPowerManagementDefaultLimit);
    LOAD(nvml, nvmlDeviceGetPowerManagementLimitConstraints); LOAD(nvml, nvmlDeviceGetEnforcedPowerLimit);
    LOAD(nvml, nvmlDeviceGetClockInfo); LOAD(nvml, nvmlDeviceGetMaxClockInfo);
    LOAD(nvml, nvmlDeviceGetApplicationsClock); LOAD(nvml, nvmlDeviceGetDefaultApplicationsClock);
    LOAD(nvml, nvmlDeviceGetFanSpeed); LOAD(nvml, nvmlDeviceGetFanSpeed_v2); LOAD(nvml, nvmlDeviceGetNumFans);
    LOAD(nvml, nvmlDeviceGetPerformanceState); LOAD(nvml, nvmlDeviceGetPowerState);
    LOAD(nvml, nvmlDeviceGetEccMode); LOAD(nvml, nvmlDeviceGetTotalEccErrors);
    LOAD(nvml, nvmlDeviceGetPersistenceMode); LOAD(nvml, nvmlDeviceGetComputeMode);
    LOAD(nvml, nvmlDeviceGetVirtualizationMode); LOAD(nvml, nvmlDeviceGetMaxMigDeviceCount);
    LOAD(nvml, nvmlDeviceValidateInforom); LOAD(nvml, nvmlDeviceIsMigDeviceHandle);
    LOAD(nvml, nvmlEventSetCreate); LOAD(nvml, nvmlDeviceRegisterEvents);
    LOAD(nvml, nvmlEventSetWait_v2); LOAD(nvml, nvmlEventSetFree);
    LOAD(nvml, nvmlDeviceGetMigMode); LOAD(nvml, nvmlDeviceGetDisplayMode); LOAD(nvml, nvmlDeviceGetDisplayActive);
    LOAD(nvml, nvmlDeviceGetComputeRunningProcesses); LOAD(nvml, nvmlDeviceGetComputeRunningProcesses_v2);
    LOAD(nvml, nvmlDeviceGetComputeRunningProcesses_v3); LOAD(nvml, nvmlDeviceGetGraphicsRunningProcesses);
    LOAD(nvml, nvmlDeviceGetGraphicsRunningProcesses_v2); LOAD(nvml, nvmlDeviceGetGraphicsRunningProcesses_v3);
    LOAD(nvml, nvmlDeviceGetMPSComputeRunningProcesses_v3); LOAD(nvml, nvmlInternalGetExportTable);
    LOAD(nvml, nvmlDeviceGetMaxPcieLinkGeneration); LOAD(nvml, nvmlDeviceGetMaxPcieLinkWidth);
    LOAD(nvml, nvmlDeviceGetCurrPcieLinkGeneration); LOAD(nvml, nvmlDeviceGetCurrPcieLinkWidth);
    LOAD(nvml, nvmlDeviceGetPcieThroughput); LOAD(nvml, nvmlDeviceGetNvLinkState);
    LOAD(nvml, nvmlDeviceGetNvLinkCapability); LOAD(nvml, nvmlDeviceGetP2PStatus);
    LOAD(nvml, nvmlDeviceGetGpuFabricInfo); LOAD(nvml, nvmlDeviceGetGpuFabricInfoV);
    LOAD(nvml, nvmlDeviceGetFieldValues);
    LOAD(cuda, cuInit); LOAD(cuda, cuDeviceGetCount); LOAD(cuda, cuDeviceGet); LOAD(cuda, cuDeviceGetName);
    LOAD(cuda, cuDeviceGetUuid); LOAD(cuda, cuDeviceGetAttribute); LOAD(cuda, cuDevicePrimaryCtxRetain);
    LOAD(cuda, cuDevicePrimaryCtxRelease_v2); LOAD(cuda, cuCtxSetCurrent); LOAD(cuda, cuMemAlloc_v2);
    LOAD(cuda, cuMemFree_v2);
}

/* A string getter: exact-size buffer works, one byte less is refused. */
static void string_semantics(const char *what, ret_t (*get)(dev_t_, char *, unsigned), dev_t_ h,
                             const char *want) {
    char buf[128];
    RET(OK, get(h, buf, sizeof buf));
    EXPECT(strcmp(buf, want) == 0, "%s: got \"%s\", want \"%s\"", what, buf, want);
    unsigned n = (unsigned)strlen(want);
    RET(OK, get(h, buf, n + 1));
    RET(INSUFFICIENT, get(h, buf, n));
    RET(INVALID, get(h, NULL, sizeof buf));
    RET(INVALID, get((dev_t_)0x10, buf, sizeof buf));
}

static void system_checks(void) {
    char buf[128];
    RET(OK, nvmlSystemGetDriverVersion(buf, sizeof buf));
    EXPECT(strcmp(buf, "580.0-test") == 0, "driver version %s", buf);
    RET(INSUFFICIENT, nvmlSystemGetDriverVersion(buf, (unsigned)strlen("580.0-test")));
    RET(OK, nvmlSystemGetNVMLVersion(buf, sizeof buf));
    EXPECT(strcmp(buf, "13.580.0-test") == 0, "NVML version %s", buf);
    int v = 0;
    RET(OK, nvmlSystemGetCudaDriverVersion(&v));
    EXPECT(v == 13000, "CUDA driver version %d", v);
    v = 0;
    RET(OK, nvmlSystemGetCudaDriverVersion_v2(&v));
    EXPECT(v == 13000, "CUDA driver version v2 %d", v);
    RET(INVALID, nvmlSystemGetCudaDriverVersion(NULL));
    /* Process names come from the client's own system. */
    RET(OK, nvmlSystemGetProcessName((unsigned)getpid(), buf, sizeof buf));
    EXPECT(strstr(buf, "nvml") != NULL, "own process name %s", buf);
    RET(OK, nvmlSystemGetProcessName((unsigned)getpid(), buf, 4));
    EXPECT(strlen(buf) == 3, "process name cropped to 3: %s", buf);
    RET(INVALID, nvmlSystemGetProcessName((unsigned)getpid(), NULL, 10));
    RET(NOT_FOUND, nvmlSystemGetProcessName(0x7ffffff0u, buf, sizeof buf));
}

static void handle_checks(unsigned i, dev_t_ h) {
    dev_t_ h1 = NULL, h2 = NULL;
    RET(OK, nvmlDeviceGetHandleByIndex(i, &h1));
    EXPECT(h1 == h, "v1 and v2 handles differ");
    unsigned idx = 99;
    RET(OK, nvmlDeviceGetIndex(h, &idx));
    EXPECT(idx == i, "index %u, want %u", idx, i);
    /* Same device as CUDA's ordinal i: name and UUID agree. */
    int cu_dev = -1;
    EXPECT(cuDeviceGet(&cu_dev, (int)i) == 0, "cuDeviceGet");
    char cu_name[128], name[128], uuid[128], want_uuid[64];
    EXPECT(cuDeviceGetName(cu_name, sizeof cu_name, cu_dev) == 0, "cuDeviceGetName");
    RET(OK, nvmlDeviceGetName(h, name, sizeof name));
    EXPECT(strcmp(name, cu_name) == 0, "NVML name %s vs CUDA %s", name, cu_name);
    unsigned char u[16];
    EXPECT(cuDeviceGetUuid(u, cu_dev) == 0, "cuDeviceGetUuid");
    snprintf(want_uuid, sizeof want_uuid,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
    string_semantics("name", nvmlDeviceGetName, h, cu_name);
    string_semantics("uuid", nvmlDeviceGetUUID, h, want_uuid);
    RET(OK, nvmlDeviceGetUUID(h, uuid, sizeof uuid));
    RET(OK, nvmlDeviceGetHandleByUUID(uuid, &h2));
    EXPECT(h2 == h, "handle by UUID");
    RET(NOT_FOUND, nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000", &h2));
    RET(INVALID, nvmlDeviceGetHandleByUUID(NULL, &h2));
    /* By PCI bus id, in every accepted form. */
    pci_t p;
    memset(&p, 0, sizeof p);
    RET(OK, nvmlDeviceGetPciInfo_v3(h, &p));
    char want_bus[32], short_bus[32];
    snprintf(want_bus, sizeof want_bus, "00000000:%02X:00.0", i + 1);
    EXPECT(strcmp(p.busId, want_bus) == 0, "busId %s, want %s", p.busId, want_bus);
    snprintf(want_bus, sizeof want_bus, "0000:%02X:00.0", i + 1);
    EXPECT(strcmp(p.busIdLegacy, want_bus) == 0, "busIdLegacy %s, want %s", p.busIdLegacy, want_bus);
    EXPECT(p.domain == 0 && p.bus == i + 1 && p.device == 0, "pci %x:%x:%x", p.domain, p.bus, p.device);
    EXPECT(p.pciDeviceId == 0x233010DEu && p.pciSubSystemId == 0x16C110DEu, "pci ids %x %x",
           p.pciDeviceId, p.pciSubSystemId);
    snprintf(short_bus, sizeof short_bus, "%x:00.0", i + 1);
    const char *forms[] = {p.busId, p.busIdLegacy, short_bus};
    for (int f = 0; f < 3; f++) {
        h2 = NULL;
        RET(OK, nvmlDeviceGetHandleByPciBusId_v2(forms[f], &h2));
        EXPECT(h2 == h, "handle by bus id %s", forms[f]);
        h2 = NULL;
        RET(OK, nvmlDeviceGetHandleByPciBusId(forms[f], &h2));
        EXPECT(h2 == h, "handle by bus id (v1) %s", forms[f]);
    }
    RET(NOT_FOUND, nvmlDeviceGetHandleByPciBusId_v2("0000:7f:00.0", &h2));
    RET(INVALID, nvmlDeviceGetHandleByPciBusId_v2("not a bus id", &h2));
    pci_t p2;
    RET(OK, nvmlDeviceGetPciInfo_v2(h, &p2));
    EXPECT(memcmp(&p, &p2, sizeof p) == 0, "PciInfo v2 differs from v3");
    /* v1: the old struct ends after pciSubSystemId (then reserved words). */
    memset(&p2, 0xAB, sizeof p2);
    RET(OK, nvmlDeviceGetPciInfo(h, &p2));
    EXPECT(strcmp(p2.busIdLegacy, p.busIdLegacy) == 0 && p2.bus == p.bus, "PciInfo v1 %s", p2.busIdLegacy);
    EXPECT((unsigned char)p2.busId[0] == 0xAB && (unsigned char)p2.busId[31] == 0xAB,
           "PciInfo v1 wrote past the old struct");
}

static void fact_checks(unsigned i, dev_t_ h) {
    char buf[64];
    snprintf(buf, sizeof buf, "TF-TEST-SERIAL-%04u", i);
    string_semantics("serial", nvmlDeviceGetSerial, h, buf);
    string_semantics("vbios", nvmlDeviceGetVbiosVersion, h, "96.00.TEST.00.01");
    unsigned v = 0, w = 0;
    RET(OK, nvmlDeviceGetBrand(h, &v));
    EXPECT(v == 14, "brand %u", v);
    RET(OK, nvmlDeviceGetArchitecture(h, &v));
    EXPECT(v == 9, "architecture %u", v);
    int major = -1, minor = -1, cu_major = -2, cu_minor = -2, cu_dev = 0;
    RET(OK, nvmlDeviceGetCudaComputeCapability(h, &major, &minor));
    cuDeviceGet(&cu_dev, (int)i);
    cuDeviceGetAttribute(&cu_major, 75, cu_dev);
    cuDeviceGetAttribute(&cu_minor, 76, cu_dev);
    EXPECT(major == cu_major && minor == cu_minor, "compute capability %d.%d vs CUDA %d.%d", major, minor,
           cu_major, cu_minor);
    RET(OK, nvmlDeviceGetMinorNumber(h, &v));
    EXPECT(v == i, "minor number %u", v);
    RET(INVALID, nvmlDeviceGetBrand(h, NULL));
    RET(INVALID, nvmlDeviceGetBrand((dev_t_)0x10, &v));
    RET(INVALID, nvmlDeviceGetCudaComputeCapability(h, &major, NULL));
    /* Clocks per type (graphics, SM, memory, video); 9 is no clock type. */
    const unsigned clocks[4] = {1410, 1410, 2619, 1275}, max[4] = {1980, 1980, 2619, 1755};
    for (int t = 0; t < 4; t++) {
        RET(OK, nvmlDeviceGetClockInfo(h, t, &v));
        EXPECT(v == clocks[t], "clock %d: %u", t, v);
        RET(OK, nvmlDeviceGetApplicationsClock(h, t, &v));
        EXPECT(v == clocks[t], "app clock %d: %u", t, v);
        RET(OK, nvmlDeviceGetMaxClockInfo(h, t, &v));
        EXPECT(v == max[t], "max clock %d: %u", t, v);
        RET(OK, nvmlDeviceGetDefaultApplicationsClock(h, t, &v));
        EXPECT(v == max[t], "default app clock %d: %u", t, v);
    }
    RET(INVALID, nvmlDeviceGetClockInfo(h, 9, &v));
    RET(INVALID, nvmlDeviceGetMaxClockInfo(h, 9, &v));
    /* Power (mW). */
    RET(OK, nvmlDeviceGetPowerUsage(h, &v));
    EXPECT(v == 75000, "power usage %u", v);
    RET(OK, nvmlDeviceGetPowerManagementLimit(h, &v));
    EXPECT(v == 700000, "power limit %u", v);
    RET(OK, nvmlDeviceGetPowerManagementDefaultLimit(h, &v));
    EXPECT(v == 700000, "default power limit %u", v);
    RET(OK, nvmlDeviceGetEnforcedPowerLimit(h, &v));
    EXPECT(v == 700000, "enforced power limit %u", v);
    RET(OK, nvmlDeviceGetPowerManagementLimitConstraints(h, &v, &w));
    EXPECT(v == 200000 && w == 700000, "power constraints %u %u", v, w);
    /* Temperatures. */
    RET(OK, nvmlDeviceGetTemperature(h, 0, &v));
    EXPECT(v == 35, "temperature %u", v);
    RET(INVALID, nvmlDeviceGetTemperature(h, 5, &v));
    temp_v_t tv = {sizeof(temp_v_t) | 1u << 24, 0, -1};
    RET(OK, nvmlDeviceGetTemperatureV(h, &tv));
    EXPECT(tv.temperature == 35, "temperature V %d", tv.temperature);
    tv.version = 7;
    RET(VERSION_MISMATCH, nvmlDeviceGetTemperatureV(h, &tv));
    const unsigned thresholds[4] = {92, 89, 95, 87};
    for (int t = 0; t < 4; t++) {
        RET(OK, nvmlDeviceGetTemperatureThreshold(h, t, &v));
        EXPECT(v == thresholds[t], "threshold %d: %u", t, v);
    }
    RET(NOT_SUPPORTED, nvmlDeviceGetTemperatureThreshold(h, 5, &v));
    /* The test board has no fans: NOT_SUPPORTED, nothing invented. */
    RET(NOT_SUPPORTED, nvmlDeviceGetNumFans(h, &v));
    RET(NOT_SUPPORTED, nvmlDeviceGetFanSpeed(h, &v));
    RET(NOT_SUPPORTED, nvmlDeviceGetFanSpeed_v2(h, 0, &v));
    /* Utilization, BAR1, states and modes. */
    util_t u;
    RET(OK, nvmlDeviceGetUtilizationRates(h, &u));
    EXPECT(u.gpu == 7 && u.memory == 3, "utilization %u %u", u.gpu, u.memory);
    bar1_t b;
    RET(OK, nvmlDeviceGetBAR1MemoryInfo(h, &b));
    EXPECT(b.total == 256 * MIB && b.free == 254 * MIB && b.used == 2 * MIB, "bar1 %llu %llu %llu",
           b.total, b.free, b.used);
    int s = -1, s2 = -1;
    RET(OK, nvmlDeviceGetPerformanceState(h, &s));
    RET(OK, nvmlDeviceGetPowerState(h, &s2));
    EXPECT(s == 0 && s2 == 0, "pstate %d %d", s, s2);
    RET(OK, nvmlDeviceGetEccMode(h, &s, &s2));
    EXPECT(s == 1 && s2 == 1, "ecc mode %d %d", s, s2);
    unsigned long long errors = 99;
    RET(OK, nvmlDeviceGetTotalEccErrors(h, 1, 0, &errors));
    EXPECT(errors == 0, "ecc errors %llu", errors);
    RET(OK, nvmlDeviceGetPersistenceMode(h, &s));
    EXPECT(s == 1, "persistence %d", s);
    RET(OK, nvmlDeviceGetComputeMode(h, &s));
    EXPECT(s == 0, "compute mode %d", s);
    RET(OK, nvmlDeviceGetMigMode(h, &v, &w));
    EXPECT(v == 0 && w == 0, "mig mode %u %u", v, w);
    RET(OK, nvmlDeviceGetDisplayMode(h, &s));
    EXPECT(s == 0, "display mode %d", s);
    RET(OK, nvmlDeviceGetDisplayActive(h, &s));
    EXPECT(s == 0, "display active %d", s);
    /* what nvidia-smi asks for at start-up */
    RET(OK, nvmlDeviceGetVirtualizationMode(h, &s));
    EXPECT(s == 0, "virtualization mode %d", s);
    RET(OK, nvmlDeviceGetMaxMigDeviceCount(h, &v));
    EXPECT(v == 7, "max MIG devices %u", v);
    RET(OK, nvmlDeviceValidateInforom(h));
    v = 9;
    RET(OK, nvmlDeviceIsMigDeviceHandle(h, &v));
    EXPECT(v == 0, "is MIG handle %u", v);
    void *set = NULL;
    unsigned char event[64];
    RET(OK, nvmlEventSetCreate(&set));
    RET(3 /* NOT_SUPPORTED */, nvmlDeviceRegisterEvents(h, 1, set));
    RET(10 /* TIMEOUT */, nvmlEventSetWait_v2(set, event, 5));
    RET(OK, nvmlEventSetFree(set));
}

/* PCIe, NvLink and fabric (what NCCL and XLA ask). Device 0 of the test
 * backend has 18 NvLinks (0-3 active) and a completed fabric registration;
 * the others have neither: NOT_SUPPORTED, forwarded as is. */
static void link_checks(unsigned i, dev_t_ h) {
    unsigned v = 0;
    RET(OK, nvmlDeviceGetMaxPcieLinkGeneration(h, &v));
    EXPECT(v == 5, "max PCIe generation %u", v);
    RET(OK, nvmlDeviceGetMaxPcieLinkWidth(h, &v));
    EXPECT(v == 16, "max PCIe width %u", v);
    RET(OK, nvmlDeviceGetCurrPcieLinkGeneration(h, &v));
    EXPECT(v == 4, "PCIe generation %u", v);
    RET(OK, nvmlDeviceGetCurrPcieLinkWidth(h, &v));
    EXPECT(v == 16, "PCIe width %u", v);
    RET(OK, nvmlDeviceGetPcieThroughput(h, 0, &v));
    EXPECT(v == 1234, "PCIe TX %u", v);
    RET(OK, nvmlDeviceGetPcieThroughput(h, 1, &v));
    EXPECT(v == 5678, "PCIe RX %u", v);
    RET(INVALID, nvmlDeviceGetPcieThroughput(h, 2, &v));
    RET(INVALID, nvmlDeviceGetPcieThroughput(h, 0, NULL));
    RET(INVALID, nvmlDeviceGetMaxPcieLinkGeneration(h, NULL));
    RET(INVALID, nvmlDeviceGetCurrPcieLinkGeneration(NULL, &v));
    RET(INVALID, nvmlDeviceGetCurrPcieLinkWidth((dev_t_)0x10, &v));
    int p2p = -1;
    RET(OK, nvmlDeviceGetP2PStatus(h, h, 0, &p2p));
    /* Driver 580 answers NOT_SUPPORTED (5) for a device with itself too. */
    EXPECT(p2p == 5, "P2P with itself %d", p2p);

    int state = -1;
    if (i == 0) {
        for (unsigned l = 0; l < 18; l++) {
            RET(OK, nvmlDeviceGetNvLinkState(h, l, &state));
            EXPECT(state == (l < 4), "link %u state %d", l, state);
            /* Twice: the second answer comes from the client's cache. */
            for (int twice = 0; twice < 2; twice++) {
                v = 9;
                RET(OK, nvmlDeviceGetNvLinkCapability(h, l, 0 /* P2P_SUPPORTED */, &v));
                EXPECT(v == (l < 4), "link %u P2P %u", l, v);
                RET(OK, nvmlDeviceGetNvLinkCapability(h, l, 5 /* VALID */, &v));
                EXPECT(v == 1, "link %u valid %u", l, v);
                RET(OK, nvmlDeviceGetNvLinkCapability(h, l, 1 /* SYSMEM_ACCESS */, &v));
                EXPECT(v == 0, "link %u sysmem %u", l, v);
            }
        }
        RET(INVALID, nvmlDeviceGetNvLinkState(h, 18, &state));
        RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 18, 0, &v));
        RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 0, 6, &v));
        RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 0, 6, &v));
        /* Beyond what fits the wire argument: refused in the client. */
        RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 0x10000, 0, &v));
        RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 0, 0x10000, &v));
        RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 0xffffffffu, -1, &v));
    } else {
        RET(NOT_SUPPORTED, nvmlDeviceGetNvLinkState(h, 0, &state));
        RET(NOT_SUPPORTED, nvmlDeviceGetNvLinkCapability(h, 0, 0, &v));
        RET(NOT_SUPPORTED, nvmlDeviceGetNvLinkCapability(h, 0, 0, &v));
    }
    RET(INVALID, nvmlDeviceGetNvLinkState(h, 0, NULL));
    RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 0, 0, NULL));
    RET(INVALID, nvmlDeviceGetNvLinkCapability((dev_t_)0x10, 0, 0, &v));

    fabric_t f;
    fabric3_t f3;
    memset(&f3, 0xAB, sizeof f3);
    f3.version = (unsigned)sizeof(fabric3_t) | 3u << 24;
    fabric2_t *f2 = (fabric2_t *)&f3;
    if (i == 0) {
        memset(&f, 0xAB, sizeof f);
        RET(OK, nvmlDeviceGetGpuFabricInfo(h, &f));
        for (int b = 0; b < 16; b++) EXPECT(f.clusterUuid[b] == 0x10 + b, "cluster uuid byte %d: %x", b, f.clusterUuid[b]);
        EXPECT(f.status == 0 && f.cliqueId == 0x7fff && f.state == 3, "fabric %d %x %u", f.status, f.cliqueId, f.state);
        RET(OK, nvmlDeviceGetGpuFabricInfoV(h, &f3));
        EXPECT(f3.version == ((unsigned)sizeof(fabric3_t) | 3u << 24), "v3 version %x", f3.version);
        for (int b = 0; b < 16; b++) EXPECT(f3.clusterUuid[b] == 0x10 + b, "v3 cluster uuid byte %d", b);
        EXPECT(f3.status == 0 && f3.cliqueId == 0x7fff && f3.state == 3 && f3.healthMask == 0x0a &&
                   f3.healthSummary == 1,
               "fabric v3 %d %x %u %x %u", f3.status, f3.cliqueId, f3.state, f3.healthMask, f3.healthSummary);
        /* Version 2 is 36 bytes: healthSummary (byte 36) stays untouched. */
        memset(&f3, 0xAB, sizeof f3);
        f2->version = (unsigned)sizeof(fabric2_t) | 2u << 24;
        RET(OK, nvmlDeviceGetGpuFabricInfoV(h, &f3));
        EXPECT(f2->cliqueId == 0x7fff && f2->state == 3 && f2->healthMask == 0x0a, "fabric v2 %x %u %x",
               f2->cliqueId, f2->state, f2->healthMask);
        EXPECT(f3.healthSummary == 0xAB, "fabric v2 wrote past its struct");
    } else {
        RET(NOT_SUPPORTED, nvmlDeviceGetGpuFabricInfo(h, &f));
        RET(NOT_SUPPORTED, nvmlDeviceGetGpuFabricInfoV(h, &f3));
    }
    f3.version = 1u << 24 | 40;
    RET(VERSION_MISMATCH, nvmlDeviceGetGpuFabricInfoV(h, &f3));
    f3.version = 0;
    RET(VERSION_MISMATCH, nvmlDeviceGetGpuFabricInfoV(h, &f3));
    RET(INVALID, nvmlDeviceGetGpuFabricInfoV(h, NULL));
    RET(INVALID, nvmlDeviceGetGpuFabricInfo(h, NULL));
    RET(INVALID, nvmlDeviceGetGpuFabricInfo((dev_t_)0x10, &f));
}

/* nvmlDeviceGetFieldValues: per-field statuses inside a successful call,
 * the value of each type, timestamps and latencies forwarded, ids kept. */
#define FIELD_TIMESTAMP 1700000000000000ll
static void field_checks(unsigned i, dev_t_ h) {
    enum { ENERGY = 83, LINK_COUNT = 91, NVLINK_TX = 138, SLOWDOWN_TLIMIT = 194, GPU_TEMP = 308,
           ECC_CURRENT = 1, UNKNOWN_ID = 9999 };
    field_t f[9];
    memset(f, 0xAB, sizeof f);
    const unsigned ids[9][2] = {{ENERGY, 0},      {LINK_COUNT, 0},  {NVLINK_TX, 0},
                                {NVLINK_TX, 5},   {NVLINK_TX, 18},  {SLOWDOWN_TLIMIT, 0},
                                {GPU_TEMP, 0},    {ECC_CURRENT, 0}, {UNKNOWN_ID, 7}};
    for (int k = 0; k < 9; k++) { f[k].fieldId = ids[k][0]; f[k].scopeId = ids[k][1]; }
    RET(OK, nvmlDeviceGetFieldValues(h, 9, f));
    for (int k = 0; k < 9; k++)
        EXPECT(f[k].fieldId == ids[k][0] && f[k].scopeId == ids[k][1], "entry %d ids changed to %u %u", k,
               f[k].fieldId, f[k].scopeId);
    EXPECT(f[0].nvmlReturn == OK && f[0].valueType == 3 && f[0].value.ullVal == 123456789ull + i,
           "energy %d %d %llu", f[0].nvmlReturn, f[0].valueType, f[0].value.ullVal);
    EXPECT(f[0].timestamp == FIELD_TIMESTAMP + ENERGY && f[0].latencyUsec == 3, "energy timing %lld %lld",
           f[0].timestamp, f[0].latencyUsec);
    if (i == 0) {
        EXPECT(f[1].nvmlReturn == OK && f[1].valueType == 1 && f[1].value.uiVal == 18, "link count %d %d %u",
               f[1].nvmlReturn, f[1].valueType, f[1].value.uiVal);
        EXPECT(f[2].nvmlReturn == OK && f[2].valueType == 3 && f[2].value.ullVal == 7, "link 0 TX %d %llu",
               f[2].nvmlReturn, f[2].value.ullVal);
        EXPECT(f[3].nvmlReturn == OK && f[3].value.ullVal == 5007, "link 5 TX %d %llu", f[3].nvmlReturn,
               f[3].value.ullVal);
        EXPECT(f[4].nvmlReturn == INVALID, "link 18 TX %d", f[4].nvmlReturn);
    } else {
        for (int k = 1; k <= 4; k++) EXPECT(f[k].nvmlReturn == NOT_SUPPORTED, "no NvLink: entry %d %d", k, f[k].nvmlReturn);
    }
    EXPECT(f[5].nvmlReturn == OK && f[5].valueType == 5 && f[5].value.siVal == -7, "T.Limit %d %d %d",
           f[5].nvmlReturn, f[5].valueType, f[5].value.siVal);
    EXPECT(f[6].nvmlReturn == OK && f[6].valueType == 0 && f[6].value.dVal == 35.5, "GPU temp %d %d %f",
           f[6].nvmlReturn, f[6].valueType, f[6].value.dVal);
    EXPECT(f[6].timestamp == FIELD_TIMESTAMP + GPU_TEMP, "GPU temp timestamp %lld", f[6].timestamp);
    EXPECT(f[7].nvmlReturn == NOT_SUPPORTED, "a field the device lacks: %d", f[7].nvmlReturn);
    /* An id this build does not know is never asked of the worker's NVML;
     * it fails as NVML fails an unknown id (INVALID_ARGUMENT, driver 580). */
    EXPECT(f[8].nvmlReturn == INVALID, "an unknown field id: %d", f[8].nvmlReturn);

    /* Longer than one request (64): split, every entry answered in order. */
    enum { MANY = 150 };
    static field_t many[MANY];
    memset(many, 0, sizeof many);
    for (int k = 0; k < MANY; k++) { many[k].fieldId = k % 2 ? GPU_TEMP : NVLINK_TX; many[k].scopeId = k % 20; many[k].nvmlReturn = -1; }
    RET(OK, nvmlDeviceGetFieldValues(h, MANY, many));
    for (int k = 0; k < MANY; k++) {
        if (k % 2) {
            EXPECT(many[k].nvmlReturn == OK && many[k].value.dVal == 35.5, "many[%d] temp %d", k, many[k].nvmlReturn);
        } else if (i == 0 && k % 20 < 18) {
            EXPECT(many[k].nvmlReturn == OK && many[k].value.ullVal == (unsigned long long)(k % 20) * 1000 + 7,
                   "many[%d] TX %d %llu", k, many[k].nvmlReturn, many[k].value.ullVal);
        } else {
            EXPECT(many[k].nvmlReturn == (i == 0 ? INVALID : NOT_SUPPORTED), "many[%d] %d", k, many[k].nvmlReturn);
        }
    }
    /* Nothing asked: success, nothing written. Bad arguments: refused. */
    f[0].nvmlReturn = 77;
    /* As driver 580: a count of 0 is an invalid argument. */
    RET(INVALID, nvmlDeviceGetFieldValues(h, 0, f));
    EXPECT(f[0].nvmlReturn == 77, "count 0 wrote an entry");
    RET(INVALID, nvmlDeviceGetFieldValues(h, -1, f));
    RET(INVALID, nvmlDeviceGetFieldValues(h, -2147483647 - 1, f));
    RET(INVALID, nvmlDeviceGetFieldValues(h, 1, NULL));
    RET(INVALID, nvmlDeviceGetFieldValues(NULL, 1, f));
    RET(INVALID, nvmlDeviceGetFieldValues((dev_t_)0x10, 1, f));
}

static void memory_checks(dev_t_ h, unsigned long long total, unsigned long long used) {
    mem_t m;
    RET(OK, nvmlDeviceGetMemoryInfo(h, &m));
    EXPECT(m.total == total && m.used == used && m.free == total - used,
           "memory total %llu used %llu free %llu, want total %llu used %llu", m.total, m.used, m.free,
           total, used);
    mem2_t m2;
    memset(&m2, 0, sizeof m2);
    m2.version = (unsigned)sizeof(mem2_t) | 2u << 24;
    RET(OK, nvmlDeviceGetMemoryInfo_v2(h, &m2));
    EXPECT(m2.total == total && m2.used == used && m2.free == total - used && m2.reserved == 0,
           "memory v2 total %llu used %llu free %llu reserved %llu", m2.total, m2.used, m2.free,
           m2.reserved);
    m2.version = 1;
    RET(VERSION_MISMATCH, nvmlDeviceGetMemoryInfo_v2(h, &m2));
    RET(INVALID, nvmlDeviceGetMemoryInfo(h, NULL));
}

/* No CUDA context yet: no process; with one: this process and its memory. */
static void process_checks(unsigned i, dev_t_ h, unsigned long long total) {
    unsigned n = 0;
    proc2_t p2[4];
    proc1_t p1[4];
    RET(OK, nvmlDeviceGetComputeRunningProcesses_v3(h, &n, NULL));
    EXPECT(n == 0, "processes before any context: %u", n);
    void *ctx = NULL;
    unsigned long long ptr = 0;
    EXPECT(cuDevicePrimaryCtxRetain(&ctx, (int)i) == 0 && cuCtxSetCurrent(ctx) == 0, "context");
    EXPECT(cuMemAlloc_v2(&ptr, 64 * MIB) == 0, "cuMemAlloc 64 MiB");
    n = 0;
    RET(INSUFFICIENT, nvmlDeviceGetComputeRunningProcesses_v3(h, &n, NULL));
    EXPECT(n == 1, "needed count %u", n);
    n = 4;
    RET(INVALID, nvmlDeviceGetComputeRunningProcesses_v3(h, &n, NULL));
    RET(INVALID, nvmlDeviceGetComputeRunningProcesses_v3(h, NULL, p2));
    n = 4;
    RET(OK, nvmlDeviceGetComputeRunningProcesses_v3(h, &n, p2));
    EXPECT(n == 1 && p2[0].pid == (unsigned)getpid() && p2[0].used == 64 * MIB, "process %u: pid %u used %llu",
           n, p2[0].pid, p2[0].used);
    EXPECT(p2[0].gi == 0xFFFFFFFFu && p2[0].ci == 0xFFFFFFFFu, "instance ids %x %x", p2[0].gi, p2[0].ci);
    n = 4;
    memset(p2, 0, sizeof p2);
    RET(OK, nvmlDeviceGetComputeRunningProcesses_v2(h, &n, p2));
    EXPECT(n == 1 && p2[0].pid == (unsigned)getpid() && p2[0].used == 64 * MIB, "v2 process");
    n = 4;
    RET(OK, nvmlDeviceGetComputeRunningProcesses(h, &n, p1));
    EXPECT(n == 1 && p1[0].pid == (unsigned)getpid() && p1[0].used == 64 * MIB, "v1 process %u %llu",
           p1[0].pid, p1[0].used);
    memory_checks(h, total, 64 * MIB);
    n = 4;
    RET(OK, nvmlDeviceGetGraphicsRunningProcesses(h, &n, p1));
    EXPECT(n == 0, "graphics v1 %u", n);
    n = 4;
    RET(OK, nvmlDeviceGetGraphicsRunningProcesses_v2(h, &n, p2));
    EXPECT(n == 0, "graphics v2 %u", n);
    n = 0;
    RET(OK, nvmlDeviceGetGraphicsRunningProcesses_v3(h, &n, NULL));
    n = 4;
    RET(OK, nvmlDeviceGetMPSComputeRunningProcesses_v3(h, &n, p2));
    EXPECT(n == 0, "MPS %u", n);
    EXPECT(cuMemFree_v2(ptr) == 0 && cuDevicePrimaryCtxRelease_v2((int)i) == 0, "free, release");
    n = 0;
    RET(OK, nvmlDeviceGetComputeRunningProcesses_v3(h, &n, NULL));
    EXPECT(n == 0, "processes after release: %u", n);
}

static void export_table_checks(void) {
    static const unsigned char smi_table[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                                0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};
    const void *t = NULL;
    RET(OK, nvmlInternalGetExportTable(&t, smi_table));
    EXPECT(t != NULL, "export table is null");
    const uintptr_t *words = t;
    EXPECT(words[0] == 512 * sizeof(void *), "export table size %lu", (unsigned long)words[0]);
    for (int i = 1; i < 512; i++) EXPECT(words[i] != 0, "export table slot %d is null", i);
    int (*slot)(void *, void *) = (int (*)(void *, void *))words[42];
    EXPECT(slot(NULL, NULL) == NOT_SUPPORTED, "an unknown slot must answer an error");
    RET(INVALID, nvmlInternalGetExportTable(&t, NULL));
}

static void all(unsigned long long total) {
    EXPECT(strcmp(nvmlErrorString(NOT_SUPPORTED), "Not Supported") == 0, "nvmlErrorString(3)");
    EXPECT(strcmp(nvmlErrorString(VERSION_MISMATCH), "Argument version mismatch") == 0, "nvmlErrorString(25)");
    unsigned n = 0;
    RET(UNINIT, nvmlDeviceGetCount_v2(&n));
    export_table_checks();
    /* Initializations nest; every variant counts. */
    RET(OK, nvmlInit());
    RET(OK, nvmlInit_v2());
    RET(OK, nvmlInitWithFlags(0));
    system_checks();
    EXPECT(cuInit(0) == 0, "cuInit");
    int cu_count = 0;
    EXPECT(cuDeviceGetCount(&cu_count) == 0, "cuDeviceGetCount");
    RET(OK, nvmlDeviceGetCount_v2(&n));
    EXPECT((int)n == cu_count && n > 0, "NVML count %u vs CUDA %d", n, cu_count);
    RET(OK, nvmlDeviceGetCount(&n));
    EXPECT((int)n == cu_count, "NVML count v1 %u", n);
    RET(INVALID, nvmlDeviceGetCount_v2(NULL));
    dev_t_ h = NULL;
    RET(INVALID, nvmlDeviceGetHandleByIndex_v2(n, &h));
    for (unsigned i = 0; i < n; i++) {
        RET(OK, nvmlDeviceGetHandleByIndex_v2(i, &h));
        handle_checks(i, h);
        fact_checks(i, h);
        link_checks(i, h);
        field_checks(i, h);
        memory_checks(h, total, 0);
        process_checks(i, h, total);
    }
    RET(OK, nvmlShutdown());
    RET(OK, nvmlShutdown());
    RET(OK, nvmlShutdown());
    RET(UNINIT, nvmlShutdown());
    RET(UNINIT, nvmlDeviceGetCount_v2(&n));
    RET(UNINIT, nvmlDeviceGetMemoryInfo(h, NULL));
    RET(OK, nvmlInit_v2());
    RET(OK, nvmlDeviceGetCount_v2(&n));
    RET(OK, nvmlShutdown());
    printf("PASS %u device(s)\n", n);
}

int main(int argc, char **argv) {
    if (argc < 2) { printf("usage: nvml all TOTAL_MIB | expect-init-error CODE | lost\n"); return 2; }
    load();
    if (strcmp(argv[1], "all") == 0 && argc == 3) {
        all(strtoull(argv[2], NULL, 10) * MIB);
    } else if (strcmp(argv[1], "expect-init-error") == 0 && argc == 3) {
        int want = atoi(argv[2]);
        RET(want, nvmlInit_v2());
        RET(want, nvmlInit());
        unsigned n;
        RET(UNINIT, nvmlDeviceGetCount_v2(&n));
        EXPECT(nvmlErrorString(want) != NULL && strlen(nvmlErrorString(want)) > 0, "error string");
        printf("PASS %s\n", nvmlErrorString(want));
    } else if (strcmp(argv[1], "requests") == 0) {
        dev_t_ h;
        unsigned v;
        RET(OK, nvmlInit_v2());
        RET(OK, nvmlDeviceGetHandleByIndex_v2(0, &h));
        for (int k = 0; k < 5; k++) {
            RET(OK, nvmlDeviceGetNvLinkCapability(h, 0, 0, &v));
            RET(INVALID, nvmlDeviceGetNvLinkCapability(h, 18, 0, &v));
            RET(OK, nvmlDeviceGetCurrPcieLinkGeneration(h, &v));
            RET(OK, nvmlDeviceGetMaxPcieLinkWidth(h, &v));
        }
        static field_t f[150];
        for (int k = 0; k < 150; k++) f[k].fieldId = 83;
        RET(OK, nvmlDeviceGetFieldValues(h, 150, f));
        EXPECT(f[149].nvmlReturn == OK && f[149].value.ullVal == 123456789ull, "last of 150");
        RET(OK, nvmlShutdown());
        printf("PASS\n");
    } else if (strcmp(argv[1], "lost") == 0) {
        dev_t_ h;
        mem_t m;
        RET(OK, nvmlInit_v2());
        RET(OK, nvmlDeviceGetHandleByIndex_v2(0, &h));
        RET(OK, nvmlDeviceGetMemoryInfo(h, &m));
        printf("ready\n");
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 3;
        RET(GPU_IS_LOST, nvmlDeviceGetMemoryInfo(h, &m));
        unsigned v;
        RET(GPU_IS_LOST, nvmlDeviceGetPowerUsage(h, &v));
        RET(GPU_IS_LOST, nvmlDeviceGetCurrPcieLinkGeneration(h, &v));
        field_t f = {.fieldId = 83};
        RET(GPU_IS_LOST, nvmlDeviceGetFieldValues(h, 1, &f));
        printf("PASS\n");
    } else {
        printf("usage: nvml all TOTAL_MIB | expect-init-error CODE | lost\n");
        return 2;
    }
    return 0;
}
