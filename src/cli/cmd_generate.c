/* jarip generate -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_generate(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'generate' is not available in this build yet");
}
