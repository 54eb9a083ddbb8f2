/*
 * plumb's ENOSPC injector, loaded with LD_PRELOAD into a target plumb
 * starts (disk_full with `with = "preload"`, the way that needs no root).
 *
 * PLUMB_ENOSPC_DIR names a directory (absolute, resolved); PLUMB_ENOSPC_FLAG
 * a file. While the flag file exists, every write through the C library to
 * a file under the directory fails with ENOSPC, as on a full disk; when the
 * file is removed, writes go through again. The flag is looked at no more
 * than once per millisecond per thread's call, so a program that writes
 * all the time pays one stat(2) per millisecond, not one per write.
 *
 * It catches what goes through the C library's exported functions (most
 * programs: Python, Ruby, Node, Java, Rust, C's own write(2)); buffered
 * stdio inside the C library and programs that make system calls
 * themselves (Go) are not caught. Nothing here allocates or writes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static char dir[PATH_MAX];
static size_t dir_len;
static char flag[PATH_MAX];
static atomic_long next_look_ms;
static atomic_int full;

__attribute__((constructor)) static void plumb_enospc_init(void)
{
    const char *d = getenv("PLUMB_ENOSPC_DIR");
    const char *f = getenv("PLUMB_ENOSPC_FLAG");
    if (!d || !f || d[0] != '/' || strlen(d) >= sizeof dir || strlen(f) >= sizeof flag)
        return;
    strcpy(flag, f);
    strcpy(dir, d);
    dir_len = strlen(dir);
    while (dir_len > 1 && dir[dir_len - 1] == '/')
        dir[--dir_len] = 0;
}

/* Whether the flag file exists, looked at no more than once a millisecond. */
static int is_full(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long now = (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now >= atomic_load_explicit(&next_look_ms, memory_order_relaxed)) {
        struct stat st;
        atomic_store(&full, stat(flag, &st) == 0);
        atomic_store_explicit(&next_look_ms, now + 1, memory_order_relaxed);
    }
    return atomic_load(&full);
}

/* Whether `fd` is a file under the directory. */
static int under_dir(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    if ((size_t)n < dir_len || memcmp(path, dir, dir_len) != 0)
        return 0;
    return dir_len == 1 || path[dir_len] == '/' || path[dir_len] == 0;
}

/* Whether a write to `fd` fails now; sets errno when it does. */
static int refuse(int fd)
{
    if (!dir_len || fd < 0 || !is_full() || !under_dir(fd))
        return 0;
    errno = ENOSPC;
    return 1;
}

#define REAL(name)                                                  \
    static __typeof__(name) *real_##name;                           \
    if (!real_##name)                                               \
        real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name);  \
    if (!real_##name) {                                             \
        errno = ENOSYS;                                             \
        return -1;                                                  \
    }

ssize_t write(int fd, const void *buf, size_t count)
{
    REAL(write);
    if (count && refuse(fd))
        return -1;
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    REAL(pwrite);
    if (count && refuse(fd))
        return -1;
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
    REAL(pwrite64);
    if (count && refuse(fd))
        return -1;
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    REAL(writev);
    if (iovcnt > 0 && refuse(fd))
        return -1;
    return real_writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    REAL(pwritev);
    if (iovcnt > 0 && refuse(fd))
        return -1;
    return real_pwritev(fd, iov, iovcnt, offset);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)
{
    REAL(pwritev2);
    if (iovcnt > 0 && refuse(fd))
        return -1;
    return real_pwritev2(fd, iov, iovcnt, offset, flags);
}

int fallocate(int fd, int mode, off_t offset, off_t len)
{
    REAL(fallocate);
    if (refuse(fd))
        return -1;
    return real_fallocate(fd, mode, offset, len);
}

/* posix_fallocate returns the error instead of setting errno. */
#define POSIX_FALLOCATE(name, off)                                          \
    int name(int fd, off offset, off len)                                   \
    {                                                                       \
        static __typeof__(name) *real;                                      \
        if (!real)                                                          \
            real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name);             \
        if (!real)                                                          \
            return ENOSYS;                                                  \
        int saved = errno;                                                  \
        if (refuse(fd)) {                                                   \
            errno = saved;                                                  \
            return ENOSPC;                                                  \
        }                                                                   \
        return real(fd, offset, len);                                       \
    }

POSIX_FALLOCATE(posix_fallocate, off_t)
POSIX_FALLOCATE(posix_fallocate64, off64_t)

int fallocate64(int fd, int mode, off64_t offset, off64_t len)
{
    REAL(fallocate64);
    if (refuse(fd))
        return -1;
    return real_fallocate64(fd, mode, offset, len);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t offset)
{
    REAL(pwritev64);
    if (iovcnt > 0 && refuse(fd))
        return -1;
    return real_pwritev64(fd, iov, iovcnt, offset);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off64_t offset, int flags)
{
    REAL(pwritev64v2);
    if (iovcnt > 0 && refuse(fd))
        return -1;
    return real_pwritev64v2(fd, iov, iovcnt, offset, flags);
}

ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
    REAL(sendfile64);
    if (count && refuse(out_fd))
        return -1;
    return real_sendfile64(out_fd, in_fd, offset, count);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    REAL(sendfile);
    if (count && refuse(out_fd))
        return -1;
    return real_sendfile(out_fd, in_fd, offset, count);
}

ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len,
                        unsigned int flags)
{
    REAL(copy_file_range);
    if (len && refuse(fd_out))
        return -1;
    return real_copy_file_range(fd_in, off_in, fd_out, off_out, len, flags);
}
