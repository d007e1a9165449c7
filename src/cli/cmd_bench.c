/* jarip bench -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_bench(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'bench' is not available in this build yet");
}
