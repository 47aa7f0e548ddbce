/* The recorder of bench_trigger_lateness's shell task and of bench/raw_timer: reads
 * CLOCK_REALTIME first thing in main() and appends one line "LABEL SECONDS.NANOSECONDS" to FILE
 * (O_APPEND, one write). LABEL is the second argument, else $TASKHUB_RUN_ID (the run id of a
 * scheduled run names its scheduled instant), else "-".
 *
 *   stamp_now FILE [LABEL]
 *
 * Linked statically, so that little but the daemon's own delay is counted: from posix_spawn to
 * main() this program takes 0.59 ms (median of 100) on the quiet benchmark VM, the same code
 * linked dynamically 0.72 ms (the dynamic loader maps libc, relocates, and runs CPUID
 * instructions, which trap to the hypervisor), and `sh -c 'date +%s.%N >> FILE'` reads the clock
 * 1.65 ms after the spawn (dash, then date's dynamic start-up before it reads the clock); with
 * builds running, 0.63, 0.94 and 6.5 ms. The baseline, raw_timer, spawns the same program, so what
 * is left is paid on both sides. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (argc < 2) {
        static const char usage[] = "usage: stamp_now FILE [LABEL]\n";
        (void)!write(2, usage, sizeof usage - 1);
        return 2;
    }
    const char* label = argc > 2 ? argv[2] : getenv("TASKHUB_RUN_ID");
    if (label == NULL || *label == '\0') label = "-";
    char line[512];
    int n = snprintf(line, sizeof line, "%s %lld.%09ld\n", label, (long long)now.tv_sec, now.tv_nsec);
    if (n < 0 || (size_t)n >= sizeof line) return 1;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    if (write(fd, line, (size_t)n) != n) {
        perror(argv[1]);
        return 1;
    }
    return close(fd) == 0 ? 0 : 1;
}
