/* load_report.h - what this daemon sends to each group, for balancing.
 *
 * Every balance_interval / 2 the daemon writes, through the worker thread,
 * one row per group it has traffic for (geodb_group_load_put(): sessions
 * open now, logins since the previous report), and a last zero row for a
 * group that had traffic in the previous report but none now; the rows
 * expire after three reports.  The site's controller sums them over the
 * live daemons into each group's weight (brain/balance.h).
 */
#ifndef LOAD_REPORT_H
#define LOAD_REPORT_H

struct daemon;
struct strbuf;

void load_report_init(struct daemon *daemon);
void load_report_deinit(struct daemon *daemon);
void load_report_metrics(struct daemon *daemon, struct strbuf *out);

#endif
