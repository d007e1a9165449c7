/* jarip plan -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_plan(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'plan' is not available in this build yet");
}
