// Package shrink gives maps back the room of their deleted entries. A Go
// map never shrinks: one that once held 100,000 channels keeps their room
// after they are gone. Registries that grow in bursts (every client in a
// hundred channels, then every client gone) rebuild their maps with Map.
package shrink

// Map returns m itself, or, when m holds less than a quarter of peak
// entries (the most it held since it was made, at least minPeak), a new
// map with m's entries and room for them only. It updates peak to m's
// size when it rebuilds. The caller owns m and peak (under its lock) and
// raises peak as entries are added.
func Map[K comparable, V any](m map[K]V, peak *int) map[K]V {
	const minPeak = 256
	if *peak < minPeak || len(m)*4 >= *peak {
		return m
	}
	fresh := make(map[K]V, len(m))
	for k, v := range m {
		fresh[k] = v
	}
	*peak = len(fresh)
	return fresh
}
