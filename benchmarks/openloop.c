/*
 * An open-loop HTTP/1.1 load generator in C, for benchmarks/tail.py and
 * benchmarks/latency.py --generator c: it sends RATE GET requests per
 * second over CONNECTIONS keep-alive connections whether or not answers
 * have come, and times each request from the moment it was due (so a
 * stall in the server cannot hide the requests that should have been sent
 * meanwhile).  It costs a few percent of a core at thousands of requests
 * per second, so it takes little CPU from the server it measures.
 *
 *     cc -O2 -o openloop benchmarks/openloop.c
 *     ./openloop HOST PORT PATH RATE SECONDS CONNECTIONS [HOSTHEADER]
 *
 * Prints one JSON object: requests due and answered, errors, the achieved
 * rate, latency percentiles in milliseconds (p50, p90, p99, p99.9, max),
 * and the generator's own CPU seconds (user, system).  Answers must carry
 * Content-Length (no chunked bodies).  Linux only (epoll, timerfd).
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUFFER 65536

enum state { IDLE, WAITING };

struct connection {
    int fd;
    enum state state;
    double due;          /* when the request in flight was due */
    char buffer[BUFFER];
    size_t filled;
    long expected;       /* bytes of the whole answer, once the head is read; -1 before */
    int statusOK;        /* the answer's status line says 200 */
};

static struct sockaddr_in address;
static char request[1024];
static size_t requestLength;
static double *latencies;
static long answered, errors;
static double *backlog;   /* due times of requests waiting for a free connection */
static long backlogHead, backlogTail;
static struct connection **idle;
static long idleCount;
static int epollFD;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void openConnection(struct connection *c)
{
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        die("socket");
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) < 0)
        die("connect");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->filled = 0;
    c->expected = -1;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epollFD, EPOLL_CTL_ADD, c->fd, &event) < 0)
        die("epoll_ctl");
}

static void send_(struct connection *c, double due)
{
    size_t sent = 0;
    while (sent < requestLength) {
        ssize_t n = write(c->fd, request + sent, requestLength - sent);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            die("write");
        }
        sent += (size_t)n;
    }
    c->state = WAITING;
    c->due = due;
    c->filled = 0;
    c->expected = -1;
}

static void dispatch(double due)
{
    if (idleCount > 0)
        send_(idle[--idleCount], due);
    else
        backlog[backlogTail++] = due;
}

static void finished(struct connection *c, int ok)
{
    latencies[answered++] = now() - c->due;
    if (!ok)
        errors++;
    if (backlogHead < backlogTail)
        send_(c, backlog[backlogHead++]);
    else {
        c->state = IDLE;
        idle[idleCount++] = c;
    }
}

/* The whole answer's length from its head, or -1 if it has none we read. */
static long answerLength(const char *head, size_t headLength)
{
    const char *line = memchr(head, '\n', headLength);
    while (line != NULL && line < head + headLength) {
        line++;
        if (strncasecmp(line, "content-length:", 15) == 0)
            return (long)headLength + strtol(line + 15, NULL, 10);
        line = memchr(line, '\n', (size_t)(head + headLength - line));
    }
    return -1;
}

static void readable(struct connection *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buffer + c->filled, BUFFER - c->filled);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            n = 0;
        }
        if (n == 0) {
            /* Closed by the server: what was in flight failed; open again. */
            epoll_ctl(epollFD, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            openConnection(c);
            if (c->state == WAITING)
                finished(c, 0);   /* sends the next waiting request, or makes it idle */
            return;
        }
        c->filled += (size_t)n;
        if (c->expected < 0) {
            char *end = memmem(c->buffer, c->filled, "\r\n\r\n", 4);
            if (end == NULL) {
                if (c->filled == BUFFER)
                    die("answer head too large");
                continue;
            }
            if (c->state != WAITING)
                die("answer with no request");
            c->expected = answerLength(c->buffer, (size_t)(end + 4 - c->buffer));
            if (c->expected < 0)
                die("answer without Content-Length");
            c->statusOK = memcmp(c->buffer, "HTTP/1.1 200", 12) == 0;
        }
        if ((long)c->filled >= c->expected) {
            finished(c, c->statusOK && (long)c->filled == c->expected);
        } else if (c->filled == BUFFER) {
            /* A large body: keep counting it without keeping it. */
            c->expected -= (long)c->filled - 16;
            memmove(c->buffer, c->buffer + c->filled - 16, 16);
            c->filled = 16;
        }
    }
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double p)
{
    long index = (long)(p * answered);
    if (index >= answered)
        index = answered - 1;
    return latencies[index] * 1000.0;
}

int main(int argc, char **argv)
{
    if (argc < 7 || argc > 8) {
        fprintf(stderr, "usage: %s HOST PORT PATH RATE SECONDS CONNECTIONS [HOSTHEADER]\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    int connections = atoi(argv[6]);
    const char *hostHeader = argc == 8 ? argv[7] : NULL;
    char defaultHost[300];
    if (rate <= 0 || seconds <= 0 || connections <= 0) {
        fprintf(stderr, "RATE, SECONDS and CONNECTIONS must be positive\n");
        return 2;
    }
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }
    if (hostHeader == NULL) {
        snprintf(defaultHost, sizeof defaultHost, "%s:%s", argv[1], argv[2]);
        hostHeader = defaultHost;
    }
    int length = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", argv[3], hostHeader);
    if (length < 0 || (size_t)length >= sizeof request) {
        fprintf(stderr, "PATH and HOSTHEADER too long\n");
        return 2;
    }
    requestLength = (size_t)length;

    long total = (long)(rate * seconds);
    latencies = calloc((size_t)total + 1, sizeof *latencies);
    backlog = calloc((size_t)total + 1, sizeof *backlog);
    idle = calloc((size_t)connections, sizeof *idle);
    struct connection *pool = calloc((size_t)connections, sizeof *pool);
    if (!latencies || !backlog || !idle || !pool)
        die("calloc");
    epollFD = epoll_create1(0);
    if (epollFD < 0)
        die("epoll_create1");
    for (int i = 0; i < connections; i++) {
        openConnection(&pool[i]);
        pool[i].state = IDLE;
        idle[idleCount++] = &pool[i];
    }

    /* A timer that fires every 1/RATE seconds; each read says how many
     * intervals passed, so a late wake-up sends every request that fell
     * due meanwhile, each timed from its own due moment. */
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (timer < 0)
        die("timerfd_create");
    long nanoseconds = (long)(1e9 / rate);
    struct itimerspec every = {
        .it_interval = {nanoseconds / 1000000000L, nanoseconds % 1000000000L},
        .it_value = {nanoseconds / 1000000000L, nanoseconds % 1000000000L},
    };
    struct epoll_event timerEvent = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epollFD, EPOLL_CTL_ADD, timer, &timerEvent);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double start = now();
    if (timerfd_settime(timer, 0, &every, NULL) < 0)
        die("timerfd_settime");

    long due = 0;
    struct epoll_event events[256];
    double deadline = -1;
    while (answered < total) {
        int count = epoll_wait(epollFD, events, 256, 1000);
        if (count < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < count; i++) {
            if (events[i].data.ptr == NULL) {
                uint64_t passed;
                if (read(timer, &passed, sizeof passed) != sizeof passed)
                    continue;
                for (uint64_t k = 0; k < passed && due < total; k++) {
                    due++;
                    dispatch(start + due / rate);
                }
                if (due >= total && deadline < 0) {
                    struct itimerspec stop = {{0, 0}, {0, 0}};
                    timerfd_settime(timer, 0, &stop, NULL);
                    deadline = now() + 10.0;
                }
            } else {
                readable(events[i].data.ptr);
            }
        }
        if (deadline > 0 && now() > deadline)
            break;   /* answers that never came count as errors below */
    }
    double elapsed = now() - start;
    getrusage(RUSAGE_SELF, &after);
    errors += total - answered;
    qsort(latencies, (size_t)answered, sizeof *latencies, compare);
    double user = (after.ru_utime.tv_sec - before.ru_utime.tv_sec)
        + (after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6;
    double system = (after.ru_stime.tv_sec - before.ru_stime.tv_sec)
        + (after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6;
    printf("{\"generator\": \"c\", \"rate\": %.1f, \"requests\": %ld, \"answered\": %ld, "
           "\"errors\": %ld, \"achieved_rate\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"generator_cpu_s\": %.3f, "
           "\"generator_user_s\": %.3f, \"generator_system_s\": %.3f, \"elapsed_s\": %.3f}\n",
           rate, total, answered, errors, answered / elapsed,
           answered ? percentile(0.50) : 0, answered ? percentile(0.90) : 0,
           answered ? percentile(0.99) : 0, answered ? percentile(0.999) : 0,
           answered ? latencies[answered - 1] * 1000.0 : 0, user + system, user, system, elapsed);
    return 0;
}
