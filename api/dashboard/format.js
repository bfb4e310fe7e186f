// Times, durations and sizes as people read them.

export function secondsSince(iso, now = Date.now()) {
  const at = Date.parse(iso ?? "");
  return Number.isNaN(at) ? 0 : Math.max(0, (now - at) / 1000);
}

export function secondsUntil(iso, now = Date.now()) {
  const at = Date.parse(iso ?? "");
  return Number.isNaN(at) ? 0 : (at - now) / 1000;
}

/** A ticking clock: `0:42`, `12:05`, `1:04:09`. */
export function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** A figure: `42 s`, `3 min 10 s`, `1 h 5 min`; `—` when unknown. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const total = Math.round(seconds);
  if (total < 60) return `${total} s`;
  if (total < 3600) {
    const s = total % 60;
    return s ? `${Math.floor(total / 60)} min ${s} s` : `${total / 60} min`;
  }
  const m = Math.floor((total % 3600) / 60);
  return m ? `${Math.floor(total / 3600)} h ${m} min` : `${total / 3600} h`;
}

/** `just now`, `4 min ago`, `2 h ago`, `yesterday`, `3 days ago`. */
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = secondsSince(iso, now);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

/** A short age for lists: `now`, `4m`, `2h`, `3d`. */
export function age(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = secondsSince(iso, now);
  if (seconds < 60) return "now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function timeOfDay(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? "" : at.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

export function dateTime(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "—";
  const day = sameDay(at, new Date())
    ? "Today"
    : at.toLocaleDateString([], { day: "numeric", month: "short" });
  return `${day}, ${timeOfDay(iso)}`;
}

/** `Today`, `Yesterday`, or the date, for day separators in a chat. */
export function dayLabel(iso) {
  const at = new Date(iso);
  const today = new Date();
  if (sameDay(at, today)) return "Today";
  const yesterday = new Date(today);
  yesterday.setDate(today.getDate() - 1);
  if (sameDay(at, yesterday)) return "Yesterday";
  return at.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });
}

export function sameDay(a, b) {
  return (
    a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate()
  );
}

export function fileSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export const PRIORITY_LABEL = { urgent: "Urgent", high: "High", normal: "Normal", low: "Low" };
export const STATUS_LABEL = { online: "Online", away: "Away", offline: "Offline" };

/** Time formats the ticker knows (`data-tick` on an element with `data-at`). */
export const TICKS = {
  wait: (iso, now) => clock(secondsSince(iso, now)),
  age: (iso, now) => age(iso, now),
  relative: (iso, now) => relative(iso, now),
  due: (iso, now) => {
    const left = secondsUntil(iso, now);
    return left >= 0 ? clock(left) : `-${clock(-left)}`;
  },
};
