// Bahasa Indonesia and English. The choice is remembered in localStorage.
export type Lang = "id" | "en";

const dict = {
  id: {
    appName: "PELBIOT",
    overview: "Ringkasan",
    transformers: "Trafo",
    ingest: "Status Ingest",
    panels: "Panel",
    search: "Cari panel…",
    allRegions: "Semua wilayah",
    online: "Daring",
    stale: "Tertunda",
    offline: "Luring",
    connected: "Terhubung",
    connecting: "Menghubungkan…",
    disconnected: "Terputus",
    lastUpdate: "Pembaruan terakhir",
    never: "belum pernah",
    voltage: "Tegangan",
    current: "Arus",
    power: "Daya",
    energyToday: "Energi hari ini",
    loading: "Pembebanan",
    powerFactor: "Faktor daya",
    frequency: "Frekuensi",
    temperature: "Suhu",
    phase: "Fasa",
    total: "Total",
    liveChart: "Grafik langsung (15 menit terakhir)",
    history: "Riwayat",
    metric: "Besaran",
    custom: "Kustom",
    from: "Dari",
    to: "Sampai",
    apply: "Terapkan",
    details: "Detail panel",
    name: "Nama",
    region: "Wilayah",
    location: "Lokasi",
    phases: "Jumlah fasa",
    nominalVoltage: "Tegangan nominal (V)",
    ratedCurrent: "Arus pengenal (A)",
    kvaRating: "Rating trafo (kVA)",
    notes: "Catatan",
    save: "Simpan",
    saved: "Tersimpan",
    saveFailed: "Gagal menyimpan",
    noPanels: "Belum ada panel. Panel muncul otomatis saat pembacaan pertama diterima.",
    notFound: "Panel tidak ditemukan",
    back: "Kembali",
    noTransformers: "Belum ada panel dengan rating kVA. Isi rating di halaman detail panel.",
    loadProfile: "Profil beban 24 jam",
    limit: "Batas",
    broker: "Broker",
    messagesPerSecond: "Pesan/detik",
    readingsPerSecond: "Pembacaan/detik",
    written: "Tersimpan",
    rejected: "Ditolak",
    queue: "Antrean",
    lag: "Jeda",
    database: "Basis data",
    ok: "Normal",
    down: "Gangguan",
    rejectedMessages: "Pesan yang ditolak",
    reason: "Alasan",
    topic: "Topik",
    payload: "Isi",
    time: "Waktu",
    none: "Tidak ada",
    language: "Bahasa",
    noData: "Tidak ada data pada rentang ini",
    readings: "pembacaan",
    zoomHint: "Seret pada grafik untuk memperbesar, klik ganda untuk kembali",
    lastSeen: "Terakhir terlihat",
    minMax: "min–maks",
    mean: "rata-rata",
    login: "Masuk",
    username: "Nama pengguna",
    password: "Kata sandi",
    logIn: "Masuk",
    logOut: "Keluar",
    changePassword: "Ganti kata sandi",
    currentPassword: "Kata sandi sekarang",
    newPassword: "Kata sandi baru",
    passwordChanged: "Kata sandi diganti",
    users: "Pengguna",
    apiKeys: "Kunci API",
    audit: "Log audit",
    role: "Peran",
    regions: "Wilayah (pisahkan dengan koma, kosong = semua)",
    disabled: "Nonaktif",
    locked: "Terkunci",
    unlock: "Buka kunci",
    enable: "Aktifkan",
    disable: "Nonaktifkan",
    create: "Buat",
    revoke: "Cabut",
    scopes: "Cakupan",
    noAccess: "Anda tidak memiliki akses ke halaman ini.",
    keyShownOnce: "Simpan kunci ini sekarang; kunci tidak akan ditampilkan lagi:",
    tooManyAttempts: "Terlalu banyak percobaan. Coba lagi dalam",
    seconds: "detik",
    anonymous: "Tamu (hanya baca)",
    actor: "Pelaku",
    action: "Tindakan",
    target: "Sasaran",
    address: "Alamat",
    result: "Hasil",
    failed: "Gagal",
    succeeded: "Berhasil",
    filter: "Saring",
    active: "Aktif",
    inactive: "Tidak aktif",
    passwordExpired: "Kata sandi Anda kedaluwarsa. Silakan ganti.",
  },
  en: {
    appName: "PELBIOT",
    overview: "Overview",
    transformers: "Transformers",
    ingest: "Ingest status",
    panels: "Panels",
    search: "Search panels…",
    allRegions: "All regions",
    online: "Online",
    stale: "Stale",
    offline: "Offline",
    connected: "Connected",
    connecting: "Connecting…",
    disconnected: "Disconnected",
    lastUpdate: "Last update",
    never: "never",
    voltage: "Voltage",
    current: "Current",
    power: "Power",
    energyToday: "Energy today",
    loading: "Loading",
    powerFactor: "Power factor",
    frequency: "Frequency",
    temperature: "Temperature",
    phase: "Phase",
    total: "Total",
    liveChart: "Live chart (last 15 minutes)",
    history: "History",
    metric: "Metric",
    custom: "Custom",
    from: "From",
    to: "To",
    apply: "Apply",
    details: "Panel details",
    name: "Name",
    region: "Region",
    location: "Location",
    phases: "Phases",
    nominalVoltage: "Nominal voltage (V)",
    ratedCurrent: "Rated current (A)",
    kvaRating: "Transformer rating (kVA)",
    notes: "Notes",
    save: "Save",
    saved: "Saved",
    saveFailed: "Could not save",
    noPanels: "No panels yet. A panel appears when its first reading arrives.",
    notFound: "Panel not found",
    back: "Back",
    noTransformers: "No panel has a kVA rating yet. Set one on the panel's detail page.",
    loadProfile: "24 h load profile",
    limit: "Limit",
    broker: "Broker",
    messagesPerSecond: "Messages/s",
    readingsPerSecond: "Readings/s",
    written: "Written",
    rejected: "Rejected",
    queue: "Queue",
    lag: "Lag",
    database: "Database",
    ok: "OK",
    down: "Down",
    rejectedMessages: "Rejected messages",
    reason: "Reason",
    topic: "Topic",
    payload: "Payload",
    time: "Time",
    none: "None",
    language: "Language",
    noData: "No data in this range",
    readings: "readings",
    zoomHint: "Drag on the chart to zoom, double-click to reset",
    lastSeen: "Last seen",
    minMax: "min–max",
    mean: "mean",
    login: "Log in",
    username: "Username",
    password: "Password",
    logIn: "Log in",
    logOut: "Log out",
    changePassword: "Change password",
    currentPassword: "Current password",
    newPassword: "New password",
    passwordChanged: "Password changed",
    users: "Users",
    apiKeys: "API keys",
    audit: "Audit log",
    role: "Role",
    regions: "Regions (comma-separated, empty = all)",
    disabled: "Disabled",
    locked: "Locked",
    unlock: "Unlock",
    enable: "Enable",
    disable: "Disable",
    create: "Create",
    revoke: "Revoke",
    scopes: "Scopes",
    noAccess: "You do not have access to this page.",
    keyShownOnce: "Store this key now; it will not be shown again:",
    tooManyAttempts: "Too many attempts. Try again in",
    seconds: "seconds",
    anonymous: "Guest (read only)",
    actor: "Actor",
    action: "Action",
    target: "Target",
    address: "Address",
    result: "Result",
    failed: "Failed",
    succeeded: "Succeeded",
    filter: "Filter",
    active: "Active",
    inactive: "Inactive",
    passwordExpired: "Your password has expired. Please change it.",
  },
} as const;

export type Key = keyof (typeof dict)["en"];

let lang: Lang = (localStorage.getItem("pelbiot.lang") as Lang) || "id";
let zone = "Asia/Jakarta";
const listeners: Array<() => void> = [];

export function t(key: Key): string {
  return dict[lang][key];
}

export function currentLang(): Lang {
  return lang;
}

export function setLang(next: Lang): void {
  lang = next;
  localStorage.setItem("pelbiot.lang", next);
  document.documentElement.lang = next;
  for (const fn of listeners) fn();
}

export function onLangChange(fn: () => void): void {
  listeners.push(fn);
}

export function setZone(name: string): void {
  zone = name;
}

function locale(): string {
  return lang === "id" ? "id-ID" : "en-GB";
}

const numberFormats = new Map<string, Intl.NumberFormat>();

export function num(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const key = `${lang}:${digits}`;
  let fmt = numberFormats.get(key);
  if (!fmt) {
    fmt = new Intl.NumberFormat(locale(), {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    numberFormats.set(key, fmt);
  }
  return fmt.format(value);
}

export function rupiah(value: number): string {
  return new Intl.NumberFormat(locale(), {
    style: "currency",
    currency: "IDR",
    maximumFractionDigits: 0,
  }).format(value);
}

/** The zone's short name: WIB for Asia/Jakarta, as operators say it. */
export function zoneLabel(): string {
  const known: Record<string, string> = {
    "Asia/Jakarta": "WIB",
    "Asia/Pontianak": "WIB",
    "Asia/Makassar": "WITA",
    "Asia/Jayapura": "WIT",
  };
  return known[zone] ?? zone;
}

export function dateTime(ms: number | null | undefined, withDate = true): string {
  if (!ms) return t("never");
  const opts: Intl.DateTimeFormatOptions = {
    timeZone: zone,
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  };
  if (withDate) Object.assign(opts, { day: "2-digit", month: "short", year: "numeric" });
  return `${new Intl.DateTimeFormat(locale(), opts).format(new Date(ms))} ${zoneLabel()}`;
}

/** Wall-clock fields of a UTC instant in the site zone, for chart axes. */
export function zonedHourMinute(ms: number, seconds = false): string {
  return new Intl.DateTimeFormat(locale(), {
    timeZone: zone,
    hour: "2-digit",
    minute: "2-digit",
    ...(seconds ? { second: "2-digit" } : {}),
    hour12: false,
  }).format(new Date(ms));
}

export function zonedDay(ms: number): string {
  return new Intl.DateTimeFormat(locale(), { timeZone: zone, day: "2-digit", month: "short" }).format(
    new Date(ms),
  );
}

/** Epoch ms of local midnight today in the site zone. */
export function startOfTodayMs(now = Date.now()): number {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  }).formatToParts(new Date(now));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const wallAsUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour") % 24, get("minute"), get("second"));
  const offset = wallAsUtc - Math.floor(now / 1000) * 1000;
  return Date.UTC(get("year"), get("month") - 1, get("day")) - offset;
}
