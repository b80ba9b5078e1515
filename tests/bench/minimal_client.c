/*
 * The floor for a one-shot `tokd get NAME`: the least a process can do to fetch a token.
 *
 *     minimal_client SOCKET HEXBYTES
 *
 * HEXBYTES is the hello frame and the get frame, built by the benchmark with the protocol
 * crate. The client connects, sends them in one write, reads the two answer frames (4-byte
 * big-endian length, then the payload) and prints the access token: the answer is bincode
 * `Response::Token` (variant 1, protocol 1.0) or `Response::Token2` (variant 13, protocol 1.1),
 * whose first field is in both the token as a varint-length string.
 * Exit 0 on success, 1 on any other answer, 2 on usage errors, 3 when it cannot connect.
 */
#include <stdint.h>
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
    if (n > (64u << 20)) return NULL;
    unsigned char *p = malloc(n ? n : 1);
    if (!p || read_full(fd, p, n)) return NULL;
    *len = n;
    return p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET HEXBYTES\n", argv[0]);
        return 2;
    }
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
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
        perror("connect");
        return 3;
    }
    if (write(fd, req, n) != (ssize_t)n) {
        perror("write");
        return 1;
    }

    size_t alen = 0, tlen = 0;
    unsigned char *ack = read_frame(fd, &alen);
    unsigned char *ans = ack ? read_frame(fd, &tlen) : NULL;
    if (!ack || !ans) {
        fprintf(stderr, "short read\n");
        return 1;
    }
    /* HelloAck: "TOKD" | major u16 | minor u16 | status u8 | ... ; status 0 = served. */
    if (alen < 9 || memcmp(ack, "TOKD", 4) != 0 || ack[8] != 0) {
        fprintf(stderr, "hello refused\n");
        return 1;
    }
    if (tlen < 2 || (ans[0] != 1 && ans[0] != 13)) {
        fprintf(stderr, "not a token answer (variant %d)\n", tlen ? ans[0] : -1);
        return 1;
    }
    /* bincode varint: < 251 is the value; 251 then u16 LE; 252 then u32 LE. */
    size_t off = 1, len;
    unsigned char b = ans[off++];
    if (b < 251) {
        len = b;
    } else if (b == 251 && tlen >= off + 2) {
        len = (size_t)ans[off] | (size_t)ans[off + 1] << 8;
        off += 2;
    } else if (b == 252 && tlen >= off + 4) {
        len = (size_t)ans[off] | (size_t)ans[off + 1] << 8 | (size_t)ans[off + 2] << 16 |
              (size_t)ans[off + 3] << 24;
        off += 4;
    } else {
        return 1;
    }
    if (off + len > tlen) return 1;
    fwrite(ans + off, 1, len, stdout);
    fputc('\n', stdout);
    return 0;
}
