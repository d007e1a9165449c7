/* jarip info -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_info(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'info' is not available in this build yet");
}
