/* The floor of one synchronous connection: a raw hiredis loop, no Swift.
 *
 *   hiredis_loop HOST PORT MODE SECONDS [DEPTH]
 *     MODE get|set: one command per round trip on one connection, value = the
 *     benchmark's small JSON record; MODE pipeline: DEPTH GETs per round trip.
 *   Prints "<ops per second>" (commands per second).
 */
#include <hiredis/hiredis.h>
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

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: hiredis_loop HOST PORT get|set|pipeline SECONDS [DEPTH]\n"); return 2; }
    redisContext *c = redisConnect(argv[1], atoi(argv[2]));
    if (c == NULL || c->err) { fprintf(stderr, "connect: %s\n", c ? c->errstr : "alloc"); return 1; }
    const char *mode = argv[3];
    double seconds = atof(argv[4]);
    int depth = argc > 5 ? atoi(argv[5]) : 100;
    const char *setv[] = {"SET", "bench:c:record", RECORD};
    size_t setl[] = {3, strlen("bench:c:record"), strlen(RECORD)};
    const char *getv[] = {"GET", "bench:c:record"};
    size_t getl[] = {3, strlen("bench:c:record")};
    redisReply *r = redisCommandArgv(c, 3, setv, setl);
    freeReplyObject(r);
    long ops = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        for (int batch = 0; batch < 100; batch++) {
            if (strcmp(mode, "pipeline") == 0) {
                for (int i = 0; i < depth; i++) redisAppendCommandArgv(c, 2, getv, getl);
                for (int i = 0; i < depth; i++) {
                    if (redisGetReply(c, (void **)&r) != REDIS_OK) { fprintf(stderr, "%s\n", c->errstr); return 1; }
                    freeReplyObject(r);
                }
                ops += depth;
            } else {
                r = strcmp(mode, "set") == 0 ? redisCommandArgv(c, 3, setv, setl) : redisCommandArgv(c, 2, getv, getl);
                if (r == NULL) { fprintf(stderr, "%s\n", c->errstr); return 1; }
                freeReplyObject(r);
                ops++;
            }
        }
    }
    printf("%.0f\n", ops / (now() - start));
    redisFree(c);
    return 0;
}
