/* output.h - the CLI's result tables and their four formats, as doveadm
 * has them: table (aligned, default), tab (tab-separated with a header),
 * flow (key=value per row) and json (an array of objects). */
#ifndef OUTPUT_H
#define OUTPUT_H

#include <stddef.h>
#include <stdio.h>

enum output_format { OUTPUT_TABLE, OUTPUT_TAB, OUTPUT_FLOW, OUTPUT_JSON };

struct output;

int output_format_parse(const char *name, enum output_format *format_r);
/* columns: NULL-terminated list of field names. */
struct output *output_create(enum output_format format, const char *const *columns);
/* One row: values in column order (NULL prints as empty). */
void output_row(struct output *output, const char *const *values);
/* Attaches a second table that belongs to output's one row (`backend
 * status`: the backend, then every daemon's observation of it); output
 * owns it from now on.  table, tab and flow print it after an empty line;
 * json makes its rows the member `name` of output's row(s). */
void output_attach(struct output *output, const char *name, struct output *child);
void output_print(struct output *output, FILE *out);
void output_destroy(struct output **output);

#endif
