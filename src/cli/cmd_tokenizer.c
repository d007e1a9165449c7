/* jarip tokenizer -- placeholder until its issue lands; exits with an error. */
#include "cli.h"

int cmd_tokenizer(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_error(1, "'tokenizer' is not available in this build yet");
}
