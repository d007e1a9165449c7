/* jarip sample -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_sample(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'sample' is not available in this build yet");
}
