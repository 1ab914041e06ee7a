/* Sweep of cuGetProcAddress_v2: what a libcuda.so.1 answers for every
 * (name, CUDA version, flags), written in the format of codegen/procaddr.tsv
 * (see xtask/src/codegen/procaddr.rs), compressed to the versions where the
 * answer changes. Import it with `cargo xtask procaddr import FILE`.
 *
 * usage: sweep LIBCUDA [--names FILE] [--names-out FILE] > procaddr.tsv
 *   LIBCUDA      path (or name) to dlopen: the real driver, or our client
 *   --names      names to ask for, one per line (default: every defined cu*
 *                symbol of LIBCUDA's ELF dynamic symbol table, as
 *                `nm -D --defined-only` lists them)
 *   --names-out  write the names used, to sweep another library with them
 *
 * Asked for: every exported name stripped of its _vN / _ptsz / _ptds
 * suffixes (the base names cudart asks for) and every full exported name
 * too (to learn whether suffixed names are answered), at every CUDA release
 * version, with flags 0, 1 and 2. Returned pointers are mapped back to
 * exported names (dladdr, then the addresses of all exports). Versions above
 * the driver's own are probed once per flags value and reported as comments.
 * Anything unusual is a `#` comment, never a row. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int (*GetProc)(const char *, void **, int, unsigned long long, int *);

/* Every CUDA_VERSION (1000 * major + 10 * minor) of a release, then what may come. */
static const int versions[] = {
    1000,  1010,  2000,  2010,  2020,  2030,  3000,  3010,  3020,  4000,  4010,  4020,
    5000,  5050,  6000,  6050,  7000,  7050,  8000,  9000,  9010,  9020,  10000, 10010,
    10020, 11000, 11010, 11020, 11030, 11040, 11050, 11060, 11070, 11080, 12000, 12010,
    12020, 12030, 12040, 12050, 12060, 12070, 12080, 12090, 13000, 13010, 13020, 13030,
    13040, 13050, 13060, 13070, 13080, 13090, 14000};
#define NV (int)(sizeof versions / sizeof versions[0])

static char **names;
static int nnames, cap;

static void add_name(const char *n) {
    for (int i = 0; i < nnames; i++)
        if (strcmp(names[i], n) == 0) return;
    if (nnames == cap) {
        cap = cap ? 2 * cap : 1024;
        names = realloc(names, cap * sizeof *names);
    }
    names[nnames++] = strdup(n);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The defined cu* symbols of an ELF shared object's .dynsym. */
static int elf_names(const char *path, void (*each)(const char *)) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return -1;
    unsigned char *m = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED || memcmp(m, ELFMAG, SELFMAG) != 0 || m[EI_CLASS] != ELFCLASS64) return -1;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)m;
    Elf64_Shdr *sh = (Elf64_Shdr *)(m + eh->e_shoff);
    int found = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM) continue;
        Elf64_Sym *sym = (Elf64_Sym *)(m + sh[i].sh_offset);
        const char *str = (const char *)(m + sh[sh[i].sh_link].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof *sym; k++) {
            const char *n = str + sym[k].st_name;
            if (sym[k].st_shndx != SHN_UNDEF && n[0] == 'c' && n[1] == 'u') {
                each(n);
                found++;
            }
        }
    }
    munmap(m, st.st_size);
    return found;
}

static void add_export(const char *n) { add_name(n); }

/* cuMemcpyHtoD_v2_ptds -> cuMemcpyHtoD */
static void base_of(const char *n, char *out, size_t len) {
    snprintf(out, len, "%s", n);
    size_t l = strlen(out);
    if (l > 5 && (strcmp(out + l - 5, "_ptds") == 0 || strcmp(out + l - 5, "_ptsz") == 0)) out[l -= 5] = 0;
    char *v = strrchr(out, '_');
    if (v && v[1] == 'v' && v[2]) {
        char *d = v + 2;
        while (*d >= '0' && *d <= '9') d++;
        if (*d == 0) *v = 0;
    }
}

/* Exports by address, to name what cuGetProcAddress returns. */
static struct { void *addr; const char *name; } *exports;
static int nexports;

static const char *name_of(void *p, char *buf, size_t len, void *base) {
    Dl_info info;
    if (dladdr(p, &info) && info.dli_sname && info.dli_saddr == p) return info.dli_sname;
    for (int i = 0; i < nexports; i++)
        if (exports[i].addr == p) return exports[i].name;
    snprintf(buf, len, "?+0x%lx", (unsigned long)((char *)p - (char *)base));
    return buf;
}

int main(int argc, char **argv) {
    const char *lib = 0, *names_in = 0, *names_out = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--names") == 0 && i + 1 < argc) names_in = argv[++i];
        else if (strcmp(argv[i], "--names-out") == 0 && i + 1 < argc) names_out = argv[++i];
        else lib = argv[i];
    }
    if (!lib) {
        fprintf(stderr, "usage: sweep LIBCUDA [--names FILE] [--names-out FILE]\n");
        return 2;
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
        return 1;
    }
    GetProc gp = (GetProc)dlsym(h, "cuGetProcAddress_v2");
    int (*drv_version)(int *) = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
    int drv = 0;
    if (!gp || !drv_version || drv_version(&drv) != 0) {
        fprintf(stderr, "%s: no cuGetProcAddress_v2 / cuDriverGetVersion\n", lib);
        return 1;
    }
    Dl_info self;
    char path[4096] = "";
    if (dladdr((void *)gp, &self) && self.dli_fname) snprintf(path, sizeof path, "%s", self.dli_fname);

    /* The exported names. */
    char **exported;
    int nexported;
    if (names_in) {
        FILE *f = fopen(names_in, "r");
        char line[512];
        if (!f) { perror(names_in); return 1; }
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n \t")] = 0;
            if (line[0] && line[0] != '#') add_name(line);
        }
        fclose(f);
    } else if (elf_names(path, add_export) <= 0) {
        fprintf(stderr, "cannot read the dynamic symbols of %s\n", path);
        return 1;
    }
    qsort(names, nnames, sizeof *names, cmp);
    exported = names;
    nexported = nnames;
    if (names_out) {
        FILE *f = fopen(names_out, "w");
        for (int i = 0; i < nexported; i++) fprintf(f, "%s\n", exported[i]);
        fclose(f);
    }
    exports = calloc(nexported, sizeof *exports);
    for (int i = 0; i < nexported; i++) {
        void *a = dlsym(h, exported[i]);
        if (a) {
            exports[nexports].addr = a;
            exports[nexports++].name = exported[i];
        }
    }
    /* What to ask for: base names and full names. */
    names = 0;
    nnames = cap = 0;
    for (int i = 0; i < nexported; i++) {
        char b[512];
        base_of(exported[i], b, sizeof b);
        add_name(b);
        add_name(exported[i]);
    }
    qsort(names, nnames, sizeof *names, cmp);

    printf("@source\tsweep of %s (cuDriverGetVersion %d)\n", path, drv);
    printf("@provisional\tno\n@driver-version\t%d\n", drv);

    /* Error conventions, as comments. */
    {
        void *p = (void *)1;
        int st = -1, r;
        /* Null arguments may crash a driver: probed in a child process. */
        const char *what[] = {"null symbol", "null pfn"};
        for (int k = 0; k < 2; k++) {
            fflush(stdout);
            pid_t child = fork();
            if (child == 0) {
                r = k == 0 ? gp(0, &p, 12000, 0, &st) : gp("cuInit", 0, 12000, 0, &st);
                printf("# probe %s: rc %d status %d\n", what[k], r, st);
                fflush(stdout);
                _exit(0);
            }
            int ws = 0;
            waitpid(child, &ws, 0);
            if (WIFSIGNALED(ws)) printf("# probe %s: the driver crashes (signal %d)\n", what[k], WTERMSIG(ws));
        }
        for (unsigned long long fl = 3; fl <= 8; fl++) {
            st = -1;
            r = gp("cuInit", &p, 12000, fl, &st);
            printf("# probe flags %llu: rc %d status %d\n", fl, r, st);
        }
        int odd[] = {0, -1, 1, 999, drv + 10, drv + 1000, 99999};
        for (unsigned i = 0; i < sizeof odd / sizeof odd[0]; i++) {
            st = -1;
            p = (void *)1;
            r = gp("cuInit", &p, odd[i], 0, &st);
            printf("# probe cuInit version %d: rc %d status %d pfn %s\n", odd[i], r, st, p ? "set" : "null");
        }
        /* The conventions the table records as directives. */
        st = -1;
        p = (void *)1;
        r = gp("cuInit", &p, drv + 10, 0, &st);
        printf("@above-driver\t%s\n", r == 1 ? "invalid-value" : "answer");
        int (*gp1)(const char *, void **, int, unsigned long long) =
            (int (*)(const char *, void **, int, unsigned long long))dlsym(h, "cuGetProcAddress");
        if (gp1) {
            r = gp1("cuNoSuchFunctionAnywhere", &p, 12000, 0);
            printf("@not-found-result-v1\t%d\n", r);
            int r2 = gp1("cuInit", &p, 1000, 0);
            if (r2 != r) printf("# cuGetProcAddress (v1): unknown name %d, version too low %d\n", r, r2);
        }
        for (const char **n = (const char *[]){"cuLaunchKernel", "cuMemcpyHtoD", "cuMemAlloc", 0}; *n; n++) {
            void *p2 = 0, *p3 = 0;
            int s2 = -1, s3 = -1;
            gp(*n, &p2, 12000, 2, &s2);
            gp(*n, &p3, 12000, 3, &s3);
            printf("# probe %s flags 3 %s flags 2\n", *n, p2 == p3 && s2 == s3 ? "answers as" : "differs from");
        }
        st = -1;
        r = gp("cuNoSuchFunctionAnywhere", &p, 12000, 0, &st);
        printf("# probe unknown name: rc %d status %d pfn %s\n", r, st, p ? "set" : "null");
        r = gp("cuInit", &p, 12000, 0, 0);
        printf("# probe null status pointer: rc %d\n", r);
    }
    for (int i = 0; i < nexports; i++)
        for (int j = i + 1; j < nexports; j++)
            if (exports[i].addr == exports[j].addr)
                printf("# alias %s = %s\n", exports[i].name, exports[j].name);

    int notfound_rc = -1, mixed = 0, rows = 0, odd_count = 0;
    for (int n = 0; n < nnames; n++) {
        for (int fl = 0; fl <= 2; fl++) {
            /* The rows of this (name, flags), printed unless every answer
             * is "not found" (a name without rows is not found anyway). */
            char out[NV][600], last[512] = "";
            int nout = 0, found_any = 0;
            for (int v = 0; v < NV; v++) {
                void *p = 0;
                int st = -1;
                int r = gp(names[n], &p, versions[v], (unsigned long long)fl, &st);
                char buf[64], ans[512];
                if (versions[v] > drv) {
                    if (n == 0 && (r != 1 || p))
                        printf("# above the driver: %s v%d flags %d: rc %d status %d\n", names[n], versions[v], fl, r, st);
                    continue;
                }
                if (r == 0 && st == 0 && p) {
                    snprintf(ans, sizeof ans, "%s", name_of(p, buf, sizeof buf, self.dli_fbase));
                    found_any = 1;
                } else if ((st == 1 || st == 2) && !p) {
                    snprintf(ans, sizeof ans, "%s", st == 1 ? "!notfound" : "!version");
                    if (st == 2) found_any = 1;
                    if (notfound_rc < 0) notfound_rc = r;
                    else if (notfound_rc != r) mixed = 1;
                } else {
                    if (odd_count++ < 200)
                        printf("# odd: %s v%d flags %d: rc %d status %d pfn %p\n", names[n], versions[v], fl, r, st, p);
                    continue;
                }
                if (strcmp(ans, last) == 0) continue;
                snprintf(last, sizeof last, "%s", ans);
                /* Below the first row is VERSION_NOT_SUFFICIENT anyway. */
                if (nout == 0 && strcmp(ans, "!version") == 0) continue;
                snprintf(out[nout++], sizeof out[0], "%s\t%d\t%d\t%s\tsweep", names[n], fl, versions[v], ans);
            }
            if (!found_any) continue;
            for (int i = 0; i < nout; i++) printf("%s\n", out[i]);
            rows += nout;
        }
    }
    /* A name answered !notfound everywhere is simply not in the table. */
    printf("@not-found-result\t%d\n", notfound_rc < 0 ? 500 : notfound_rc);
    if (mixed) printf("# not found / version not sufficient came with different CUresults\n");
    printf("# %d names asked, %d rows, %d odd answers\n", nnames, rows, odd_count);
    fprintf(stderr, "sweep: %d names, %d rows, driver %d\n", nnames, rows, drv);
    return 0;
}
