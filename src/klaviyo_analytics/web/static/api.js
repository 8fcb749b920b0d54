// The JSON API client: the key travels in a header (never in a URL), errors keep the API's shape.

const KEY_STORAGE = "klaviyo-analytics.api-key";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Private windows may refuse storage; the key then lives as long as the page.
  }
  memoryKey = key;
}

let memoryKey = "";

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Call the API; resolve to the parsed body, or reject with ApiError (status 0: no answer). */
export async function api(path, { params, method = "GET", signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = getKey() || memoryKey;
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(`/api/${path}${query(params)}`, { method, headers, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "The server did not answer. Is it running?", null);
  }
  let body = null;
  const text = await response.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    throw new ApiError(
      response.status,
      error.code || "http_error",
      error.message || `The server answered ${response.status} ${response.statusText}`,
      error.details ?? null,
    );
  }
  return body;
}
