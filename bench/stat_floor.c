/* The kernel's floor under `dvx checkout` / `dvx status`: list every directory one
 * level below argv[1], sort its names and lstat (fstatat, AT_SYMLINK_NOFOLLOW) each
 * entry, as DVX's scanner must, with argv[2] threads pulling directories from a shared
 * counter. No Python, no records: only the system calls. Prints one JSON line.
 * Built and run by bench_scale.py (cc -O2 -pthread). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int top, ndirs, next_dir, do_stat = 1;
static char (*dir_names)[256];
static long total;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void *work(void *arg) {
    (void)arg;
    size_t cap = 1 << 16, arena_cap = 1 << 22;
    char **names = malloc(cap * sizeof(char *));
    char *arena = malloc(arena_cap);
    long count = 0;
    for (;;) {
        int i = __atomic_fetch_add(&next_dir, 1, __ATOMIC_RELAXED);
        if (i >= ndirs) break;
        int fd = openat(top, dir_names[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (!d) continue;
        struct dirent *e;
        size_t n = 0, off = 0;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            size_t len = strlen(e->d_name) + 1;
            if (n == cap || off + len > arena_cap) break; /* (bench data: 1,000 short names a directory) */
            memcpy(arena + off, e->d_name, len);
            names[n++] = arena + off;
            off += len;
        }
        qsort(names, n, sizeof(char *), by_name);
        struct stat st;
        if (do_stat)
            for (size_t j = 0; j < n; j++) fstatat(fd, names[j], &st, AT_SYMLINK_NOFOLLOW);
        count += n;
        closedir(d);
    }
    __atomic_fetch_add(&total, count, __ATOMIC_RELAXED);
    free(names);
    free(arena);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: stat_floor DIR THREADS [STAT=1]\n");
        return 2;
    }
    int threads = atoi(argv[2]);
    if (argc > 3) do_stat = atoi(argv[3]);
    if (threads < 1 || threads > 64) threads = 1;
    top = open(argv[1], O_RDONLY | O_DIRECTORY);
    DIR *td = top < 0 ? NULL : fdopendir(dup(top));
    if (!td) {
        perror(argv[1]);
        return 1;
    }
    struct dirent *e;
    dir_names = malloc(sizeof(*dir_names) * 100000);
    while ((e = readdir(td)) && ndirs < 100000)
        if (e->d_type == DT_DIR && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(dir_names[ndirs++], 256, "%s", e->d_name);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t = now();
    pthread_t tids[64];
    int started = 0;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tids[started], NULL, work, NULL) == 0) started++;
    work(NULL);
    for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
    double wall = now() - t;
    getrusage(RUSAGE_SELF, &r1);
    double user = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) * 1e-6;
    double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1e-6;
    printf("{\"threads\": %d, \"stat\": %d, \"entries\": %ld, \"dirs\": %d, \"wall\": %.3f, \"cpu\": %.3f, "
           "\"us_per_entry_cpu\": %.3f}\n", threads, do_stat, total, ndirs, wall, user + sys,
           total ? (user + sys) / total * 1e6 : 0.0);
    return 0;
}
