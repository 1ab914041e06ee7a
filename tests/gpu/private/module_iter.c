/* Native probe of the private "tools module" table 6e163fbe, slot 7, which
 * cuFFT calls to iterate a module's functions. Settles what the client must
 * reproduce: the return value, the callback's arguments (is the third the
 * kernel's name?), whether the function handles equal cuModuleGetFunction's,
 * and the word at offset 8 of the function object. Runs on the real driver
 * only (scripts/gpu/25-private-probes.sh); prints "key = value" lines.
 *
 * usage: module_iter /path/to/libcuda.so.1 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef int CUresult;
typedef void *CUcontext, *CUmodule, *CUfunction;
static const char PTX[] =
    ".version 8.0\n.target sm_90\n.address_size 64\n"
    ".visible .entry alpha(.param .u64 a)\n{\n ret;\n}\n"
    ".visible .entry beta(.param .u32 n)\n{\n ret;\n}\n"
    ".visible .entry gamma()\n{\n ret;\n}\n";

static CUresult (*cuInit)(unsigned);
static CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, int);
static CUresult (*cuCtxSetCurrent)(CUcontext);
static CUresult (*cuModuleLoadData)(CUmodule *, const void *);
static CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*cuFuncGetName)(const char **, CUfunction);
static CUresult (*cuGetExportTable)(const void **, const unsigned char *);

static CUmodule mod;
static int calls;
static void visit(void *user, CUfunction fn, uint64_t third) {
    const char *name = 0;
    cuFuncGetName(&name, fn);
    CUfunction by_name = 0;
    if (name) cuModuleGetFunction(&by_name, mod, name);
    printf("call %d: user_ok = %d\n", calls, user == (void *)0x1234);
    printf("call %d: name = %s\n", calls, name ? name : "(null)");
    printf("call %d: fn_equals_get_function = %d\n", calls, fn == by_name);
    printf("call %d: third_equals_name_ptr = %d\n", calls, (const char *)(uintptr_t)third == name);
    printf("call %d: third_is_small = %d (%llu)\n", calls, third < 4096, third < 4096 ? (unsigned long long)third : 0ull);
    printf("call %d: word8_equals_third = %d\n", calls, *(uint64_t *)((char *)fn + 8) == third);
    printf("call %d: word8_equals_module = %d\n", calls, *(uint64_t *)((char *)fn + 8) == (uint64_t)(uintptr_t)mod);
    calls++;
}

int main(int argc, char **argv) {
    void *h = dlopen(argc > 1 ? argv[1] : "libcuda.so.1", RTLD_NOW);
    if (!h) { printf("FAIL dlopen\n"); return 1; }
#define L(n) *(void **)&n = dlsym(h, #n)
    L(cuInit); L(cuDevicePrimaryCtxRetain); L(cuCtxSetCurrent); L(cuModuleLoadData);
    L(cuModuleGetFunction); L(cuFuncGetName); L(cuGetExportTable);
    CUcontext ctx;
    if (cuInit(0) || cuDevicePrimaryCtxRetain(&ctx, 0) || cuCtxSetCurrent(ctx) || cuModuleLoadData(&mod, PTX)) {
        printf("FAIL setup\n");
        return 1;
    }
    static const unsigned char guid[16] = {0x6e, 0x16, 0x3f, 0xbe, 0xb9, 0x58, 0x44, 0x4d,
                                           0x83, 0x5c, 0xe1, 0x82, 0xaf, 0xf1, 0x99, 0x1e};
    const uintptr_t *t = 0;
    CUresult r = cuGetExportTable((const void **)&t, guid);
    printf("table = %d, size_word = %lu\n", r, t ? (unsigned long)t[0] : 0ul);
    if (r || !t) return 1;
    typedef uint64_t (*Iter)(CUcontext, CUmodule, void (*)(void *, CUfunction, uint64_t), void *);
    Iter it = (Iter)t[7];
    uint64_t ret = it(ctx, mod, visit, (void *)0x1234);
    printf("with ctx: return = %llu, callbacks = %d\n", (unsigned long long)ret, calls);
    calls = 0;
    ret = it(0, mod, visit, (void *)0x1234);
    printf("with NULL ctx: return = %llu, callbacks = %d\n", (unsigned long long)ret, calls);
    return 0;
}
