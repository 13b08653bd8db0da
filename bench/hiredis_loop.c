/* The floor of synchronous connections: a raw hiredis loop, no Swift.
 *
 *   hiredis_loop HOST PORT MODE SECONDS [DEPTH] [THREADS]
 *     MODE get|set: one command per round trip, value = the benchmark's small
 *     JSON record; MODE pipeline: DEPTH GETs per round trip. THREADS threads
 *     (default 1), each with a connection of its own, as a pool would have.
 *   Prints "<ops per second>" (commands per second, all threads together).
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *RECORD = "{\"attempt\":3,\"id\":42,\"started_at\":1732640000.5,\"status\":\"executing\",\"tags\":[\"a\",\"b\"]}";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct job {
    const char *host, *mode;
    int port, depth;
    double seconds;
    long ops;
    int failed;
};

static void *loop(void *argument) {
    struct job *job = argument;
    redisContext *c = redisConnect(job->host, job->port);
    if (c == NULL || c->err) { fprintf(stderr, "connect: %s\n", c ? c->errstr : "alloc"); job->failed = 1; return NULL; }
    const char *setv[] = {"SET", "bench:c:record", RECORD};
    size_t setl[] = {3, strlen("bench:c:record"), strlen(RECORD)};
    const char *getv[] = {"GET", "bench:c:record"};
    size_t getl[] = {3, strlen("bench:c:record")};
    redisReply *r = redisCommandArgv(c, 3, setv, setl);
    freeReplyObject(r);
    double end = now() + job->seconds;
    while (now() < end) {
        for (int batch = 0; batch < 100; batch++) {
            if (strcmp(job->mode, "pipeline") == 0) {
                for (int i = 0; i < job->depth; i++) redisAppendCommandArgv(c, 2, getv, getl);
                for (int i = 0; i < job->depth; i++) {
                    if (redisGetReply(c, (void **)&r) != REDIS_OK) { fprintf(stderr, "%s\n", c->errstr); job->failed = 1; return NULL; }
                    freeReplyObject(r);
                }
                job->ops += job->depth;
            } else {
                r = strcmp(job->mode, "set") == 0 ? redisCommandArgv(c, 3, setv, setl) : redisCommandArgv(c, 2, getv, getl);
                if (r == NULL) { fprintf(stderr, "%s\n", c->errstr); job->failed = 1; return NULL; }
                freeReplyObject(r);
                job->ops++;
            }
        }
    }
    redisFree(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: hiredis_loop HOST PORT get|set|pipeline SECONDS [DEPTH] [THREADS]\n"); return 2; }
    int threads = argc > 6 ? atoi(argv[6]) : 1;
    if (threads < 1 || threads > 256) { fprintf(stderr, "THREADS must be 1..256\n"); return 2; }
    struct job jobs[256];
    pthread_t ids[256];
    double start = now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){argv[1], argv[3], atoi(argv[2]), argc > 5 ? atoi(argv[5]) : 100, atof(argv[4]), 0, 0};
        pthread_create(&ids[t], NULL, loop, &jobs[t]);
    }
    long ops = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        if (jobs[t].failed) return 1;
        ops += jobs[t].ops;
    }
    printf("%.0f\n", ops / (now() - start));
    return 0;
}
