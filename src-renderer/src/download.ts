/** Saves a URL (data: or blob:) as a download named `file`, through a temporary link. */
export function downloadUrl(url: string, file: string): void {
  const a = document.createElement('a');
  a.href = url;
  a.download = file;
  document.body.append(a);
  a.click();
  a.remove();
}
