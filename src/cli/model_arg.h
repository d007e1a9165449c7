#ifndef JARIP_CLI_MODEL_ARG_H
#define JARIP_CLI_MODEL_ARG_H

#include <stdio.h>

#include "cli.h"
#include "model/model.h"

/* Exactly one of preset/config: fills c or prints the error, returns 2. */
int model_arg_config(const char *preset, const char *config, Config *c);
void model_arg_list_presets(FILE *f);

#endif
