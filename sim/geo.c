/* geo.c - the GeoDB model: last-write-wins cells with per-reader replication
 * delays.  See sim.h. */
#include "sim.h"

void geo_init(struct geo *geo, uint64_t seed, int64_t repl_max_ms)
{
	uint64_t s = seed ^ 0x67656f6462206465ULL;
	geo->delay_seed = splitmix64(&s);
	geo->repl_max_ms = repl_max_ms;
	geo->seq = 0;
	geo->overflow = false;
}

int64_t geo_delay(const struct geo *geo, uint32_t seq, int reader)
{
	uint64_t s = geo->delay_seed ^ ((uint64_t)seq * 0x9e3779b97f4a7c15ULL) ^
		     ((uint64_t)(reader + 2) << 40);
	return (int64_t)(splitmix64(&s) % (uint64_t)(geo->repl_max_ms + 1));
}

void geo_put(struct geo *geo, struct geo_cell *cell, int writer, int64_t now, int32_t value,
	     int64_t aux)
{
	if (cell->count == GEO_VERSIONS) {
		/* the oldest version may go only when the one after it has
		 * reached every reader: then nobody can read the oldest again */
		if (cell->w[GEO_VERSIONS - 2].t + geo->repl_max_ms > now)
			geo->overflow = true;
		cell->count--;
	}
	for (int i = cell->count; i > 0; i--)
		cell->w[i] = cell->w[i - 1];
	cell->w[0] = (struct geo_write){
		.t = now,
		.aux = aux,
		.seq = ++geo->seq,
		.value = value,
		.writer = (int16_t)writer,
	};
	cell->count++;
}

const struct geo_write *geo_read(const struct geo *geo, const struct geo_cell *cell, int reader,
				 int64_t now)
{
	for (unsigned i = 0; i < cell->count; i++) {
		const struct geo_write *w = &cell->w[i];
		if (w->writer == reader || w->t + geo_delay(geo, w->seq, reader) <= now)
			return w;
	}
	return NULL;
}

const struct geo_write *geo_at(const struct geo_cell *cell, int64_t t)
{
	for (unsigned i = 0; i < cell->count; i++) {
		if (cell->w[i].t <= t)
			return &cell->w[i];
	}
	return NULL;
}

const struct geo_write *geo_head(const struct geo_cell *cell)
{
	return cell->count > 0 ? &cell->w[0] : NULL;
}
