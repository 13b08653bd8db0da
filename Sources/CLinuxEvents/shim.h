#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

/// Names the calling thread where the system shows it (`PR_SET_NAME`: the
/// kernel keeps 15 bytes). `prctl` is variadic, which Swift cannot call.
static inline int baldur_name_this_thread(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}
