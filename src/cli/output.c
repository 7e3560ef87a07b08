/* output.c - see output.h. */
#include "cli/output.h"

#include "util/strbuf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct output {
	enum output_format format;
	size_t column_count;
	char **columns;
	char **cells; /* row-major */
	size_t row_count;
	char *child_name; /* output_attach() */
	struct output *child;
};

int output_format_parse(const char *name, enum output_format *format_r)
{
	static const char *const names[] = {"table", "tab", "flow", "json"};
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, names[i]) == 0) {
			*format_r = (enum output_format)i;
			return 0;
		}
	}
	return -1;
}

struct output *output_create(enum output_format format, const char *const *columns)
{
	struct output *output = calloc(1, sizeof(*output));
	output->format = format;
	while (columns[output->column_count] != NULL)
		output->column_count++;
	output->columns = calloc(output->column_count, sizeof(char *));
	for (size_t i = 0; i < output->column_count; i++)
		output->columns[i] = strdup(columns[i]);
	return output;
}

void output_row(struct output *output, const char *const *values)
{
	size_t n = output->column_count;
	output->cells = realloc(output->cells, (output->row_count + 1) * n * sizeof(char *));
	for (size_t i = 0; i < n; i++)
		output->cells[output->row_count * n + i] =
			strdup(values[i] != NULL ? values[i] : "");
	output->row_count++;
}

static bool needs_quotes(const char *value)
{
	return *value == '\0' || strpbrk(value, " \t\"=") != NULL;
}

static void print_json(const struct output *output, struct strbuf *buf);

/* Appends output (and its child) in its format to buf. */
static void print_to(const struct output *output, struct strbuf *buf)
{
	size_t n = output->column_count;
	switch (output->format) {
	case OUTPUT_TABLE: {
		size_t *width = calloc(n, sizeof(size_t));
		for (size_t c = 0; c < n; c++) {
			width[c] = strlen(output->columns[c]);
			for (size_t r = 0; r < output->row_count; r++) {
				size_t len = strlen(output->cells[r * n + c]);
				if (len > width[c])
					width[c] = len;
			}
		}
		for (size_t c = 0; c < n; c++)
			strbuf_printf(buf, "%-*s%s", c + 1 < n ? (int)width[c] : 0,
				      output->columns[c], c + 1 < n ? " " : "\n");
		for (size_t r = 0; r < output->row_count; r++) {
			for (size_t c = 0; c < n; c++)
				strbuf_printf(buf, "%-*s%s", c + 1 < n ? (int)width[c] : 0,
					      output->cells[r * n + c], c + 1 < n ? " " : "\n");
		}
		free(width);
		break;
	}
	case OUTPUT_TAB:
		for (size_t c = 0; c < n; c++)
			strbuf_printf(buf, "%s%s", output->columns[c], c + 1 < n ? "\t" : "\n");
		for (size_t r = 0; r < output->row_count; r++) {
			for (size_t c = 0; c < n; c++)
				strbuf_printf(buf, "%s%s", output->cells[r * n + c],
					      c + 1 < n ? "\t" : "\n");
		}
		break;
	case OUTPUT_FLOW:
		for (size_t r = 0; r < output->row_count; r++) {
			for (size_t c = 0; c < n; c++) {
				const char *value = output->cells[r * n + c];
				strbuf_printf(buf, "%s=", output->columns[c]);
				if (needs_quotes(value))
					strbuf_append_json_string(buf, value);
				else
					strbuf_append(buf, value);
				strbuf_append(buf, c + 1 < n ? " " : "\n");
			}
		}
		break;
	case OUTPUT_JSON:
		print_json(output, buf);
		strbuf_append(buf, "\n");
		return;
	}
	if (output->child != NULL) {
		strbuf_append(buf, "\n");
		print_to(output->child, buf);
	}
}

static void print_json(const struct output *output, struct strbuf *buf)
{
	size_t n = output->column_count;
	strbuf_append(buf, "[");
	for (size_t r = 0; r < output->row_count; r++) {
		strbuf_append(buf, r == 0 ? "{" : ",{");
		for (size_t c = 0; c < n; c++) {
			if (c > 0)
				strbuf_append(buf, ",");
			strbuf_append_json_string(buf, output->columns[c]);
			strbuf_append(buf, ":");
			strbuf_append_json_string(buf, output->cells[r * n + c]);
		}
		if (output->child != NULL) {
			strbuf_append(buf, n > 0 ? "," : "");
			strbuf_append_json_string(buf, output->child_name);
			strbuf_append(buf, ":");
			print_json(output->child, buf);
		}
		strbuf_append(buf, "}");
	}
	strbuf_append(buf, "]");
}

void output_attach(struct output *output, const char *name, struct output *child)
{
	output_destroy(&output->child);
	free(output->child_name);
	output->child_name = strdup(name);
	output->child = child;
}

void output_print(struct output *output, FILE *out)
{
	struct strbuf buf = {0};
	print_to(output, &buf);
	if (buf.len > 0)
		fwrite(buf.data, 1, buf.len, out);
	strbuf_free(&buf);
}

void output_destroy(struct output **_output)
{
	struct output *output = *_output;
	if (output == NULL)
		return;
	for (size_t i = 0; i < output->column_count; i++)
		free(output->columns[i]);
	for (size_t i = 0; i < output->row_count * output->column_count; i++)
		free(output->cells[i]);
	free(output->columns);
	free(output->cells);
	free(output->child_name);
	output_destroy(&output->child);
	free(output);
	*_output = NULL;
}
