// OAuth 2.0 Form Post Response Mode: submits the response to the client at once.
// Served from our origin so the page's CSP can allow it with script-src 'self'.
document.getElementById("form-post").submit();
