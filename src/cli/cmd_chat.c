/* jarip chat -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_chat(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'chat' is not available in this build yet");
}
