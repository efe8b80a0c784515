# toml-override.awk: copies a jitsu TOML config, setting some keys.
# Usage: awk -v overrides="SECTION.KEY=VALUE;..." -f toml-override.awk IN > OUT
# VALUE is TOML text ("\"15s\"", "[\"a\", \"b\"]"). A key already in its
# [SECTION] table is replaced in place; a missing one is added at the end of
# that table, or in a new table at the end of the file. SECTION "*" replaces
# the key in every table where it appears (e.g. *.idle_timeout), and adds it
# to [defaults] when it appears nowhere. Array tables ([[unikernel]]) are
# only touched through "*".
BEGIN {
  n = split(overrides, ov, ";")
  for (i = 1; i <= n; i++) {
    if (ov[i] == "") continue
    eq = index(ov[i], "=")
    path = substr(ov[i], 1, eq - 1)
    val = substr(ov[i], eq + 1)
    dot = index(path, ".")
    sec = substr(path, 1, dot - 1); key = substr(path, dot + 1)
    if (sec == "*") { star[key] = val; continue }
    want[sec, key] = val
    keys[sec] = keys[sec] " " key
    order[++nsec] = sec
  }
  section = ""
}
function flush(s,   k, m, list, j) {
  m = split(keys[s], list, " ")
  for (j = 1; j <= m; j++) {
    k = list[j]
    if (!((s, k) in done)) { print k " = " want[s, k]; done[s, k] = 1 }
  }
}
/^[[:space:]]*\[/ {
  if (!array) flush(section)
  h = $0; gsub(/[[:space:]]|#.*/, "", h)
  array = (h ~ /^\[\[/)
  gsub(/[\[\]]/, "", h)
  section = h; seen[h] = 1
  print; next
}
/^[[:space:]]*[A-Za-z0-9_-]+[[:space:]]*=/ {
  k = $0; sub(/^[[:space:]]*/, "", k); sub(/[[:space:]]*=.*/, "", k)
  if (k in star) { print k " = " star[k]; starred[k] = 1; next }
  if (!array && ((section, k) in want)) { print k " = " want[section, k]; done[section, k] = 1; next }
}
{ print }
END {
  if (!array) flush(section)
  for (k in star) if (!(k in starred)) {
    if (("defaults" SUBSEP k) in want) continue
    want["defaults", k] = star[k]; keys["defaults"] = keys["defaults"] " " k; order[++nsec] = "defaults"
  }
  for (i = 1; i <= nsec; i++) {
    s = order[i]
    if (s in printed) continue
    printed[s] = 1
    m = split(keys[s], list, " "); pending = 0
    for (j = 1; j <= m; j++) if (!((s, list[j]) in done)) pending = 1
    if (!pending) continue
    print ""; print "[" s "]"; flush(s)
  }
}
