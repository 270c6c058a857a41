package forward

// Migration returns the SQL that takes the schema from version v-1 to v,
// for tests that build an older schema by hand.
func Migration(v int) string { return migrations[v-1] }
