// Times as PostgreSQL writes them ("2026-12-03 18:48:26.719121+00", "... UTC" in
// backup_label) and as users give them, read into milliseconds for comparisons.

/** Milliseconds since the epoch, or NaN when the text is not such a time. */
export function parsePostgresTime(text: string): number {
  const iso = text
    .trim()
    .replace(' ', 'T')
    .replace(/\s*(UTC|GMT)$/i, 'Z')
    .replace(/(\.\d{3})\d+/, '$1')
    .replace(/([+-]\d{2})$/, '$1:00')
    .replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  return Date.parse(iso);
}
