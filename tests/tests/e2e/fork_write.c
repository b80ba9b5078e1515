/*
 * The fork attack on `allow_exe` (issue: check the process that wrote the request, not the
 * one that connected).
 *
 *     fork_write SOCKET HEXBYTES ALLOWED
 *
 * Connects to SOCKET, forks; the parent execs ALLOWED (a copy of sleep) with the socket
 * still open, so the connecting process now runs the allowed program; the child waits for
 * that, writes the hello and get frames (HEXBYTES), reads the two answers and prints
 * `token` when the second is a token answer, `refused` otherwise. Then it ends the parent.
 * Exit 0 when it printed an answer, 2 on usage errors, 3 when something else failed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int read_full(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static unsigned char *read_frame(int fd, size_t *len) {
    unsigned char h[4];
    if (read_full(fd, h, 4)) return NULL;
    size_t n = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
    if (n > (1u << 20)) return NULL;
    unsigned char *p = malloc(n ? n : 1);
    if (!p || read_full(fd, p, n)) return NULL;
    *len = n;
    return p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    size_t hl = strlen(argv[2]);
    if (hl == 0 || hl % 2) return 2;
    size_t n = hl / 2;
    unsigned char *req = malloc(n);
    if (!req) return 2;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(argv[2][2 * i]), lo = hexval(argv[2][2 * i + 1]);
        if (hi < 0 || lo < 0) return 2;
        req[i] = (unsigned char)(hi << 4 | lo);
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(argv[1]) >= sizeof addr.sun_path) return 2;
    strcpy(addr.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
        perror("connect");
        return 3;
    }
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) return 3;
    if (child > 0) {
        execl(argv[3], argv[3], "30", (char *)NULL);
        perror("exec");
        return 3;
    }
    /* The child: wait until the connecting process runs the allowed program. */
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)parent);
    for (int i = 0; i < 5000; i++) {
        ssize_t l = readlink(link, target, sizeof target - 1);
        if (l > 0) {
            target[l] = 0;
            if (strcmp(target, argv[3]) == 0) break;
        }
        usleep(1000);
    }
    int rc = 3;
    if (write(fd, req, n) == (ssize_t)n) {
        size_t alen = 0, tlen = 0;
        unsigned char *ack = read_frame(fd, &alen);
        unsigned char *ans = ack ? read_frame(fd, &tlen) : NULL;
        if (ans && tlen > 0) {
            puts(ans[0] == 1 || ans[0] == 13 ? "token" : "refused");
            rc = 0;
        }
    }
    fflush(stdout);
    kill(parent, SIGTERM);
    return rc;
}
