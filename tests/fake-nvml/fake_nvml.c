/*
 * A fake NVML (libnvidia-ml.so) for Sentinel's GPU tests, which run on
 * machines without an NVIDIA GPU. It implements the entry points
 * nvml-wrapper 0.13 calls for what Sentinel reads: init and shutdown, the
 * driver version, devices (count, handle, name, UUID, memory) and their
 * compute and graphics processes.
 *
 * The "driver" is a scenario file named by $FAKE_NVML_SCENARIO, re-read
 * whenever it changes (tests rewrite it atomically with rename), one
 * directive per line:
 *
 *   device INDEX total BYTES [base BYTES] [name NAME...]
 *   proc DEVICE PID BYTES [compute|graphics]
 *   error DEVICE memory|processes CODE     (that query fails with CODE)
 *   # comment
 *
 * A device's used memory is its base plus its processes' bytes.
 * Test-only: built by the tests, never part of the package.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEV 16
#define MAX_PROC 4096

typedef int nvmlReturn_t;
enum {
    OK = 0,
    ERR_UNINITIALIZED = 1,
    ERR_INVALID_ARGUMENT = 2,
    ERR_NOT_FOUND = 6,
    ERR_INSUFFICIENT_SIZE = 7,
    ERR_UNKNOWN = 999,
};

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

struct dev {
    int present;
    unsigned long long total, base;
    char name[96];
    int mem_error, proc_error;
};

struct proc {
    unsigned int dev, pid;
    unsigned long long bytes;
    int graphics;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static struct dev devs[MAX_DEV];
static struct proc procs[MAX_PROC];
static int nprocs;
static struct timespec seen_mtime;
static off_t seen_size = -1;
static ino_t seen_ino;

/* Re-reads the scenario if it changed. Called with the lock held. */
static void refresh(void) {
    const char *path = getenv("FAKE_NVML_SCENARIO");
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return;
    if (st.st_ino == seen_ino && st.st_size == seen_size &&
        st.st_mtim.tv_sec == seen_mtime.tv_sec && st.st_mtim.tv_nsec == seen_mtime.tv_nsec)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    memset(devs, 0, sizeof devs);
    nprocs = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned int a, b;
        unsigned long long x;
        char word[32], kind[32];
        if (sscanf(line, "device %u total %llu", &a, &x) == 2 && a < MAX_DEV) {
            struct dev *d = &devs[a];
            d->present = 1;
            d->total = x;
            char *p = strstr(line, " base ");
            if (p)
                d->base = strtoull(p + 6, NULL, 10);
            p = strstr(line, " name ");
            snprintf(d->name, sizeof d->name, "%s", p ? p + 6 : "Fake GPU");
            d->name[strcspn(d->name, "\n")] = 0;
        } else if (sscanf(line, "proc %u %u %llu %31s", &a, &b, &x, kind) >= 3 && a < MAX_DEV &&
                   nprocs < MAX_PROC) {
            int n = sscanf(line, "proc %u %u %llu %31s", &a, &b, &x, kind);
            procs[nprocs].dev = a;
            procs[nprocs].pid = b;
            procs[nprocs].bytes = x;
            procs[nprocs].graphics = n == 4 && strcmp(kind, "graphics") == 0;
            nprocs++;
        } else if (sscanf(line, "error %u %31s %u", &a, word, &b) == 3 && a < MAX_DEV) {
            if (strcmp(word, "memory") == 0)
                devs[a].mem_error = (int)b;
            else if (strcmp(word, "processes") == 0)
                devs[a].proc_error = (int)b;
        }
    }
    fclose(f);
    seen_ino = st.st_ino;
    seen_size = st.st_size;
    seen_mtime = st.st_mtim;
}

static int device_count(void) {
    int n = 0;
    while (n < MAX_DEV && devs[n].present)
        n++;
    return n;
}

/* Handles are 1 + index, so NULL is never a valid device. */
static struct dev *dev_of(void *h, unsigned int *index) {
    unsigned long i = (unsigned long)h;
    if (i == 0 || i > MAX_DEV || !devs[i - 1].present)
        return NULL;
    if (index)
        *index = (unsigned int)(i - 1);
    return &devs[i - 1];
}

nvmlReturn_t nvmlInit_v2(void) {
    pthread_mutex_lock(&lock);
    initialized++;
    refresh();
    pthread_mutex_unlock(&lock);
    return OK;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    if (initialized > 0)
        initialized--;
    pthread_mutex_unlock(&lock);
    return OK;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case OK: return "Success";
    case 15: return "GPU is lost";
    case ERR_UNKNOWN: return "Unknown Error";
    default: return "Fake NVML error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!version || length == 0)
        return ERR_INVALID_ARGUMENT;
    snprintf(version, length, "%s", "550.54.14");
    return OK;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!count)
        return ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (!initialized) {
        pthread_mutex_unlock(&lock);
        return ERR_UNINITIALIZED;
    }
    refresh();
    *count = (unsigned int)device_count();
    pthread_mutex_unlock(&lock);
    return OK;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (!device)
        return ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    refresh();
    int ok = index < MAX_DEV && devs[index].present;
    pthread_mutex_unlock(&lock);
    if (!ok)
        return ERR_INVALID_ARGUMENT;
    *device = (void *)(unsigned long)(index + 1);
    return OK;
}

nvmlReturn_t nvmlDeviceGetName(void *h, char *name, unsigned int length) {
    pthread_mutex_lock(&lock);
    struct dev *d = dev_of(h, NULL);
    if (d && name && length)
        snprintf(name, length, "%s", d->name);
    pthread_mutex_unlock(&lock);
    return d ? OK : ERR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetUUID(void *h, char *uuid, unsigned int length) {
    unsigned int i = 0;
    pthread_mutex_lock(&lock);
    struct dev *d = dev_of(h, &i);
    if (d && uuid && length)
        snprintf(uuid, length, "GPU-fake0000-0000-0000-0000-%012u", i);
    pthread_mutex_unlock(&lock);
    return d ? OK : ERR_INVALID_ARGUMENT;
}

static unsigned long long used_of(unsigned int index, const struct dev *d) {
    unsigned long long used = d->base;
    for (int k = 0; k < nprocs; k++)
        if (procs[k].dev == index)
            used += procs[k].bytes;
    return used > d->total ? d->total : used;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(void *h, nvmlMemory_v2_t *m) {
    unsigned int i = 0;
    nvmlReturn_t r = OK;
    pthread_mutex_lock(&lock);
    refresh();
    struct dev *d = dev_of(h, &i);
    if (!d || !m)
        r = ERR_INVALID_ARGUMENT;
    else if (d->mem_error)
        r = d->mem_error;
    else {
        m->total = d->total;
        m->reserved = 0;
        m->used = used_of(i, d);
        m->free = d->total - m->used;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(void *h, nvmlMemory_t *m) {
    nvmlMemory_v2_t v2;
    nvmlReturn_t r = nvmlDeviceGetMemoryInfo_v2(h, &v2);
    if (r == OK && m) {
        m->total = v2.total;
        m->free = v2.free;
        m->used = v2.used;
    }
    return r;
}

static nvmlReturn_t processes(void *h, unsigned int *count, nvmlProcessInfo_t *infos, int graphics) {
    unsigned int i = 0;
    nvmlReturn_t r = OK;
    if (!count)
        return ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    refresh();
    struct dev *d = dev_of(h, &i);
    if (!d)
        r = ERR_INVALID_ARGUMENT;
    else if (d->proc_error)
        r = d->proc_error;
    else {
        unsigned int n = 0;
        for (int k = 0; k < nprocs; k++)
            if (procs[k].dev == i && procs[k].graphics == graphics)
                n++;
        if (!infos || *count < n) {
            /* NVML's contract: the count needed, and INSUFFICIENT_SIZE
             * unless there is nothing to list. */
            r = n == 0 ? OK : ERR_INSUFFICIENT_SIZE;
            *count = n;
        } else {
            unsigned int j = 0;
            for (int k = 0; k < nprocs; k++)
                if (procs[k].dev == i && procs[k].graphics == graphics) {
                    infos[j].pid = procs[k].pid;
                    infos[j].usedGpuMemory = procs[k].bytes;
                    infos[j].gpuInstanceId = 0xFFFFFFFF;
                    infos[j].computeInstanceId = 0xFFFFFFFF;
                    j++;
                }
            *count = n;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(void *h, unsigned int *count, nvmlProcessInfo_t *infos) {
    return processes(h, count, infos, 0);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(void *h, unsigned int *count, nvmlProcessInfo_t *infos) {
    return processes(h, count, infos, 1);
}
