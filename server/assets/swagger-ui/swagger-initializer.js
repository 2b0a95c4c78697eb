// The Swagger UI of adledger: reads the server's own /openapi.json; loads nothing else.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    // No validator badge: it would send the document to an outside service.
    validatorUrl: null,
  });
};
