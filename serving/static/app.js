// wildscan officers' page: upload photos, show results in words, export a report.
// No framework, no CDN, no build step. Everything the server sends is inserted with
// textContent (never innerHTML), so file names and notes cannot inject markup.
"use strict";

const STRINGS = {
  en: {
    subtitle: "Check marketplace photos for protected wildlife products",
    language: "Language", apiKey: "API key", useKey: "Use key",
    keySaved: "Key kept for this browser tab.", keyMissing: "Enter your API key first.",
    keyNotNeeded: "Demo mode: no key needed.",
    keyInvalid: "The API key was refused. Check it and try again.",
    caseDetails: "Case details (optional)", caseId: "Case number", sourceUrl: "Ad URL", note: "Note",
    explainOpt: "Show why (heatmap, slower)",
    dropHint: "Drop photos here", or: "or", pick: "Choose photos",
    dropNote: "Photos are checked on this server only; nothing is sent to the internet.",
    downloadCsv: "Download report (CSV)", downloadJson: "Download report (JSON)", print: "Print", clear: "Clear",
    reportTitle: "wildscan report", generated: "Generated", noResults: "No photos checked yet.",
    disclaimer: "A pointer for officers, not a legal determination: verify species and permits against the official CITES and EU lists.",
    analysing: "Analysing…", flagged: "Flagged: likely protected", notFlagged: "Not flagged",
    uncertain: "Uncertain: check by eye",
    possible: "Possible match, below the alert threshold: check by eye", confidence: "Confidence", others: "Other possibilities",
    serverMessage: "Server message (English)",
    decidedBy: "Decided by", byModel: "the model", byGallery: "reference photos: {category} gallery, version {version} (similarity {similarity} ≥ threshold {threshold})", modelAlone: "The model alone said", references: "Matching reference photos (SHA-256)",
    evidence: "Evidence", file: "File", sha256: "SHA-256 of the image", pdq: "PDQ (perceptual hash)",
    size: "Image size", model: "Model", modelSha: "Model SHA-256", time: "Time (UTC)", resultId: "Result ID",
    showHeatmap: "Show heatmap", hideHeatmap: "Hide heatmap",
    heatmapHelp: "Red areas changed the answer most when hidden.",
    errorTitle: "Could not check this photo", summary: "Photos checked: {n} · flagged: {f}",
    modelLine: "Model: {name} {version}",
    fbQuestion: "Is this result right?", fbCorrect: "Correct", fbWrong: "Wrong", fbPick: "It really shows",
    fbSend: "Send", fbSaved: "Recorded as correct. Thank you.", fbSavedWrong: "Recorded: it shows {label}. Thank you.",
    fbFailed: "The answer could not be saved. Try again.",
    reasons: {
      empty: "The file is empty.", too_large: "The file is too large.",
      request_too_large: "The upload is too large.", too_many_files: "Too many files in one upload.",
      too_many_pixels: "The image has too many pixels.",
      bad_dimensions: "The image has impossible proportions (not a photo).", not_an_image: "This file is not an image.",
      unsupported_format: "This image format is not supported (use JPEG, PNG, WebP, GIF, BMP or TIFF).",
      truncated: "The file is cut off (incomplete download?).", corrupt: "The image data is damaged.",
      unreadable: "The file could not be read.", timeout: "The server took too long. Try again.",
      network: "The server could not be reached.", other: "The server refused the photo.",
    },
  },
  fr: {
    subtitle: "Vérifier les photos d'annonces : produits d'espèces protégées",
    language: "Langue", apiKey: "Clé d'API", useKey: "Utiliser la clé",
    keySaved: "Clé conservée pour cet onglet.", keyMissing: "Saisissez d'abord votre clé d'API.",
    keyNotNeeded: "Mode démo : aucune clé nécessaire.",
    keyInvalid: "La clé d'API a été refusée. Vérifiez-la et réessayez.",
    caseDetails: "Détails du dossier (facultatif)", caseId: "Numéro de dossier", sourceUrl: "URL de l'annonce",
    note: "Remarque", explainOpt: "Expliquer (carte de chaleur, plus lent)",
    dropHint: "Déposez les photos ici", or: "ou", pick: "Choisir des photos",
    dropNote: "Les photos sont analysées sur ce serveur uniquement ; rien n'est envoyé sur Internet.",
    downloadCsv: "Télécharger le rapport (CSV)", downloadJson: "Télécharger le rapport (JSON)",
    print: "Imprimer", clear: "Effacer", reportTitle: "Rapport wildscan", generated: "Généré le",
    noResults: "Aucune photo analysée pour l'instant.",
    disclaimer: "Une indication pour les agents, pas une décision juridique : vérifiez l'espèce et les permis dans les listes officielles CITES et UE.",
    analysing: "Analyse en cours…", flagged: "Signalé : probablement protégé", notFlagged: "Non signalé",
    uncertain: "Incertain : à vérifier à l'œil",
    possible: "Correspondance possible, sous le seuil d'alerte : à vérifier à l'œil", confidence: "Confiance", others: "Autres possibilités",
    serverMessage: "Message du serveur (anglais)",
    decidedBy: "Décidé par", byModel: "le modèle", byGallery: "des photos de référence : galerie {category}, version {version} (similarité {similarity} ≥ seuil {threshold})", modelAlone: "Le modèle seul disait", references: "Photos de référence correspondantes (SHA-256)",
    evidence: "Éléments de preuve", file: "Fichier", sha256: "SHA-256 de l'image",
    pdq: "PDQ (empreinte perceptuelle)", size: "Taille de l'image", model: "Modèle",
    modelSha: "SHA-256 du modèle", time: "Heure (UTC)", resultId: "Identifiant du résultat",
    showHeatmap: "Afficher la carte de chaleur", hideHeatmap: "Masquer la carte de chaleur",
    heatmapHelp: "Les zones rouges modifient le plus la réponse lorsqu'elles sont masquées.",
    errorTitle: "Impossible d'analyser cette photo", summary: "Photos analysées : {n} · signalées : {f}",
    modelLine: "Modèle : {name} {version}",
    fbQuestion: "Ce résultat est-il juste ?", fbCorrect: "Juste", fbWrong: "Faux", fbPick: "La photo montre en fait",
    fbSend: "Envoyer", fbSaved: "Enregistré comme juste. Merci.", fbSavedWrong: "Enregistré : la photo montre {label}. Merci.",
    fbFailed: "La réponse n'a pas pu être enregistrée. Réessayez.",
    reasons: {
      empty: "Le fichier est vide.", too_large: "Le fichier est trop volumineux.",
      request_too_large: "L'envoi est trop volumineux.", too_many_files: "Trop de fichiers en un seul envoi.",
      too_many_pixels: "L'image contient trop de pixels.",
      bad_dimensions: "Les proportions de l'image sont impossibles (pas une photo).", not_an_image: "Ce fichier n'est pas une image.",
      unsupported_format: "Ce format d'image n'est pas pris en charge (JPEG, PNG, WebP, GIF, BMP ou TIFF).",
      truncated: "Le fichier est tronqué (téléchargement incomplet ?).",
      corrupt: "Les données de l'image sont endommagées.", unreadable: "Le fichier est illisible.",
      timeout: "Le serveur a mis trop de temps. Réessayez.", network: "Le serveur est injoignable.",
      other: "Le serveur a refusé la photo.",
    },
  },
  de: {
    subtitle: "Marktplatzfotos auf geschützte Wildtier- und Pflanzenprodukte prüfen",
    language: "Sprache", apiKey: "API-Schlüssel", useKey: "Schlüssel verwenden",
    keySaved: "Schlüssel für diesen Tab gespeichert.", keyMissing: "Geben Sie zuerst Ihren API-Schlüssel ein.",
    keyNotNeeded: "Demo-Modus: kein Schlüssel nötig.",
    keyInvalid: "Der API-Schlüssel wurde abgelehnt. Bitte prüfen und erneut versuchen.",
    caseDetails: "Falldaten (optional)", caseId: "Aktenzeichen", sourceUrl: "Anzeigen-URL", note: "Notiz",
    explainOpt: "Begründung zeigen (Heatmap, langsamer)",
    dropHint: "Fotos hier ablegen", or: "oder", pick: "Fotos auswählen",
    dropNote: "Die Fotos werden nur auf diesem Server geprüft; nichts wird ins Internet gesendet.",
    downloadCsv: "Bericht herunterladen (CSV)", downloadJson: "Bericht herunterladen (JSON)",
    print: "Drucken", clear: "Leeren", reportTitle: "wildscan-Bericht", generated: "Erstellt",
    noResults: "Noch keine Fotos geprüft.",
    disclaimer: "Ein Hinweis für Beamte, keine rechtliche Feststellung: Art und Genehmigungen anhand der offiziellen CITES- und EU-Listen prüfen.",
    analysing: "Wird analysiert…", flagged: "Markiert: wahrscheinlich geschützt", notFlagged: "Nicht markiert",
    uncertain: "Unsicher: selbst prüfen",
    possible: "Mögliche Übereinstimmung unter der Warnschwelle: selbst prüfen", confidence: "Konfidenz", others: "Andere Möglichkeiten",
    serverMessage: "Servermeldung (englisch)",
    decidedBy: "Entschieden durch", byModel: "das Modell", byGallery: "Referenzfotos: Galerie {category}, Version {version} (Ähnlichkeit {similarity} ≥ Schwelle {threshold})", modelAlone: "Das Modell allein sagte", references: "Passende Referenzfotos (SHA-256)",
    evidence: "Beweisdaten", file: "Datei", sha256: "SHA-256 des Bildes", pdq: "PDQ (Wahrnehmungs-Hash)",
    size: "Bildgröße", model: "Modell", modelSha: "SHA-256 des Modells", time: "Zeit (UTC)",
    resultId: "Ergebnis-ID", showHeatmap: "Heatmap zeigen", hideHeatmap: "Heatmap ausblenden",
    heatmapHelp: "Rote Bereiche verändern die Antwort am stärksten, wenn sie verdeckt werden.",
    errorTitle: "Dieses Foto konnte nicht geprüft werden", summary: "Geprüfte Fotos: {n} · markiert: {f}",
    modelLine: "Modell: {name} {version}",
    fbQuestion: "Ist dieses Ergebnis richtig?", fbCorrect: "Richtig", fbWrong: "Falsch", fbPick: "Das Foto zeigt tatsächlich",
    fbSend: "Senden", fbSaved: "Als richtig gespeichert. Danke.", fbSavedWrong: "Gespeichert: das Foto zeigt {label}. Danke.",
    fbFailed: "Die Antwort konnte nicht gespeichert werden. Bitte erneut versuchen.",
    reasons: {
      empty: "Die Datei ist leer.", too_large: "Die Datei ist zu groß.",
      request_too_large: "Der Upload ist zu groß.", too_many_files: "Zu viele Dateien in einem Upload.",
      too_many_pixels: "Das Bild hat zu viele Pixel.",
      bad_dimensions: "Das Bild hat unmögliche Seitenverhältnisse (kein Foto).", not_an_image: "Diese Datei ist kein Bild.",
      unsupported_format: "Dieses Bildformat wird nicht unterstützt (JPEG, PNG, WebP, GIF, BMP oder TIFF).",
      truncated: "Die Datei ist abgeschnitten (unvollständiger Download?).",
      corrupt: "Die Bilddaten sind beschädigt.", unreadable: "Die Datei konnte nicht gelesen werden.",
      timeout: "Der Server hat zu lange gebraucht. Bitte erneut versuchen.",
      network: "Der Server ist nicht erreichbar.", other: "Der Server hat das Foto abgelehnt.",
    },
  },
  nl: {
    subtitle: "Advertentiefoto's controleren op producten van beschermde soorten",
    language: "Taal", apiKey: "API-sleutel", useKey: "Sleutel gebruiken",
    keySaved: "Sleutel bewaard voor dit tabblad.", keyMissing: "Voer eerst uw API-sleutel in.",
    keyNotNeeded: "Demomodus: geen sleutel nodig.",
    keyInvalid: "De API-sleutel is geweigerd. Controleer hem en probeer opnieuw.",
    caseDetails: "Dossiergegevens (optioneel)", caseId: "Dossiernummer", sourceUrl: "URL van de advertentie",
    note: "Notitie", explainOpt: "Uitleg tonen (heatmap, trager)",
    dropHint: "Zet foto's hier neer", or: "of", pick: "Foto's kiezen",
    dropNote: "Foto's worden alleen op deze server gecontroleerd; er gaat niets naar internet.",
    downloadCsv: "Rapport downloaden (CSV)", downloadJson: "Rapport downloaden (JSON)",
    print: "Afdrukken", clear: "Wissen", reportTitle: "wildscan-rapport", generated: "Gemaakt",
    noResults: "Nog geen foto's gecontroleerd.",
    disclaimer: "Een aanwijzing voor ambtenaren, geen juridische vaststelling: controleer soort en vergunningen aan de hand van de officiële CITES- en EU-lijsten.",
    analysing: "Bezig met analyseren…", flagged: "Gemarkeerd: waarschijnlijk beschermd", notFlagged: "Niet gemarkeerd",
    uncertain: "Onzeker: zelf controleren",
    possible: "Mogelijke overeenkomst, onder de waarschuwingsdrempel: zelf controleren", confidence: "Betrouwbaarheid", others: "Andere mogelijkheden",
    serverMessage: "Serverbericht (Engels)",
    decidedBy: "Beslist door", byModel: "het model", byGallery: "referentiefoto's: galerij {category}, versie {version} (gelijkenis {similarity} ≥ drempel {threshold})", modelAlone: "Het model alleen zei", references: "Overeenkomende referentiefoto's (SHA-256)",
    evidence: "Bewijsgegevens", file: "Bestand", sha256: "SHA-256 van de afbeelding",
    pdq: "PDQ (perceptuele hash)", size: "Afbeeldingsgrootte", model: "Model", modelSha: "SHA-256 van het model",
    time: "Tijd (UTC)", resultId: "Resultaat-ID", showHeatmap: "Heatmap tonen", hideHeatmap: "Heatmap verbergen",
    heatmapHelp: "Rode gebieden veranderen het antwoord het meest als ze worden afgedekt.",
    errorTitle: "Deze foto kon niet worden gecontroleerd", summary: "Gecontroleerde foto's: {n} · gemarkeerd: {f}",
    modelLine: "Model: {name} {version}",
    fbQuestion: "Klopt dit resultaat?", fbCorrect: "Klopt", fbWrong: "Fout", fbPick: "De foto toont eigenlijk",
    fbSend: "Versturen", fbSaved: "Opgeslagen als juist. Bedankt.", fbSavedWrong: "Opgeslagen: de foto toont {label}. Bedankt.",
    fbFailed: "Het antwoord kon niet worden opgeslagen. Probeer het opnieuw.",
    reasons: {
      empty: "Het bestand is leeg.", too_large: "Het bestand is te groot.",
      request_too_large: "De upload is te groot.", too_many_files: "Te veel bestanden in één upload.",
      too_many_pixels: "De afbeelding heeft te veel pixels.",
      bad_dimensions: "De afbeelding heeft onmogelijke verhoudingen (geen foto).", not_an_image: "Dit bestand is geen afbeelding.",
      unsupported_format: "Dit afbeeldingsformaat wordt niet ondersteund (JPEG, PNG, WebP, GIF, BMP of TIFF).",
      truncated: "Het bestand is afgekapt (onvolledige download?).",
      corrupt: "De afbeeldingsgegevens zijn beschadigd.", unreadable: "Het bestand kon niet worden gelezen.",
      timeout: "De server deed er te lang over. Probeer opnieuw.",
      network: "De server is niet bereikbaar.", other: "De server heeft de foto geweigerd.",
    },
  },
};

const KEY_STORAGE = "wildscan.apiKey";
const LANG_STORAGE = "wildscan.lang";
const PARALLEL_UPLOADS = 2;
const CSV_COLUMNS = [
  "result_id", "received_at", "file", "sha256", "pdq", "width", "height", "label", "label_name", "score",
  "flagged", "possible", "legal_note", "model_name", "model_version", "model_sha256", "model_runtime", "model_precision", "case_id", "source_url", "note",
  "error_reason", "error_message", "matched_by", "gallery_category", "gallery_version", "gallery_similarity",
  "gallery_threshold", "references", "feedback_verdict", "feedback_label",
];

const state = {
  lang: "en",
  authRequired: true,
  labels: null, // GET /v1/labels
  model: null,
  entries: [], // {id, file, objectUrl, record, error, card, showHeatmap}
  nextId: 1,
};

const $ = (selector, root = document) => root.querySelector(selector);

function t(key) {
  return STRINGS[state.lang][key] ?? STRINGS.en[key] ?? key;
}

function format(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// --- language ------------------------------------------------------------------------

function applyLanguage(lang) {
  state.lang = STRINGS[lang] ? lang : "en";
  document.documentElement.lang = state.lang;
  $("#lang").value = state.lang;
  sessionStorage.setItem(LANG_STORAGE, state.lang);
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  renderKeyStatus();
  renderModelLine();
  state.entries.forEach(renderCard);
  renderSummary();
}

function labelName(label, record) {
  if (!label) return "";
  const lang = state.lang;
  if (state.labels) {
    if (label === state.labels.uncertain.id) return state.labels.uncertain.names[lang];
    const category = state.labels.categories.find((c) => c.id === label);
    if (category) return category.names[lang] || category.names.en;
  }
  return (record && record.label === label && record.label_name) || label;
}

function legalNote(record) {
  const lang = state.lang;
  if (state.labels && record.label) {
    if (record.label === state.labels.uncertain.id) return state.labels.uncertain.legal_notes[lang];
    const category = state.labels.categories.find((c) => c.id === record.label);
    if (category) return category.legal_notes[lang] || category.legal_notes.en;
  }
  return record.legal_note || "";
}

// --- API key -------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function renderKeyStatus(message) {
  const status = $("#key-status");
  if (message) {
    status.textContent = t(message);
    status.dataset.kind = message;
  } else if (!state.authRequired) {
    status.textContent = t("keyNotNeeded");
  } else if (status.dataset.kind) {
    status.textContent = t(status.dataset.kind);
  }
}

async function saveKey(event) {
  event.preventDefault();
  const value = $("#api-key").value.trim();
  if (value) {
    // check the key before keeping it: a wrong key is said now, not at the first upload
    const response = await fetch("/v1/me", { headers: { Authorization: `Bearer ${value}` } }).catch(() => null);
    if (response && response.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      renderKeyStatus("keyInvalid");
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, value);
    renderKeyStatus("keySaved");
  } else {
    sessionStorage.removeItem(KEY_STORAGE);
    renderKeyStatus(state.authRequired ? "keyMissing" : null);
  }
}

// --- server info -----------------------------------------------------------------------

async function loadServerInfo() {
  try {
    const ready = await fetch("/readyz").then((r) => r.json());
    state.authRequired = ready.auth_required !== false;
    state.model = ready.model || null;
    state.labels = await fetch("/v1/labels").then((r) => (r.ok ? r.json() : null));
  } catch (err) {
    state.labels = null;
  }
  renderKeyStatus();
  renderModelLine();
  state.entries.forEach(renderCard);
}

function renderModelLine() {
  const line = $("#model-line");
  line.textContent = state.model ? format(t("modelLine"), state.model) + ` · SHA-256 ${state.model.sha256}` : "";
}

// --- uploads ---------------------------------------------------------------------------

function addFiles(fileList) {
  const files = Array.from(fileList).filter((f) => f.size >= 0);
  if (!files.length) return;
  if (state.authRequired && !apiKey()) {
    const typed = $("#api-key").value.trim();
    if (typed) sessionStorage.setItem(KEY_STORAGE, typed);
    else {
      renderKeyStatus("keyMissing");
      $("#api-key").focus();
      return;
    }
  }
  const entries = files.map((file) => createEntry(file));
  runQueue(entries);
}

function createEntry(file) {
  const entry = {
    id: state.nextId++, file, objectUrl: URL.createObjectURL(file), record: null, error: null,
    pending: true, showHeatmap: false, card: null, feedback: null, feedbackOpen: false, feedbackFailed: false,
  };
  entry.card = $("#card-template").content.firstElementChild.cloneNode(true);
  entry.card.dataset.entry = String(entry.id);
  wireFeedback(entry);
  $(".toggle-heatmap", entry.card).addEventListener("click", () => {
    entry.showHeatmap = !entry.showHeatmap;
    renderCard(entry);
  });
  $("#empty").hidden = true;
  $("#results").prepend(entry.card);
  state.entries.unshift(entry);
  renderCard(entry);
  return entry;
}

async function runQueue(entries) {
  const queue = entries.slice().reverse(); // oldest first
  const workers = Array.from({ length: Math.min(PARALLEL_UPLOADS, queue.length) }, async () => {
    while (queue.length) await classify(queue.shift());
  });
  await Promise.all(workers);
}

async function classify(entry) {
  const form = new FormData();
  form.append("files", entry.file, entry.file.name);
  form.append("lang", state.lang);
  form.append("explain", $("#explain").checked ? "true" : "false");
  entry.fields = {}; // kept for the report, also when the server refuses the photo
  for (const [field, id] of [["case_id", "#case-id"], ["source_url", "#source-url"], ["note", "#note"]]) {
    const value = $(id).value.trim();
    if (value) {
      form.append(field, value);
      entry.fields[field] = value;
    }
  }
  const headers = {};
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  try {
    const response = await fetch("/v1/classify", { method: "POST", body: form, headers });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      entry.record = body.results[0];
      if (entry.record.error) entry.error = entry.record.error;
    } else {
      entry.error = (body && typeof body.detail === "object" && body.detail) || { reason: "other", message: "" };
      if (response.status === 401) renderKeyStatus("keyInvalid");
    }
  } catch (err) {
    entry.error = { reason: "network", message: String(err) };
  }
  entry.pending = false;
  renderCard(entry);
  renderSummary();
}

// --- rendering -------------------------------------------------------------------------

function renderCard(entry) {
  const card = entry.card;
  const record = entry.record;
  $(".thumb", card).src = entry.objectUrl;
  $(".thumb", card).alt = entry.file.name;
  $(".file", card).textContent = entry.file.name;
  card.classList.toggle("pending", entry.pending);
  card.classList.toggle("failed", Boolean(entry.error));
  card.classList.remove("flagged", "clear", "uncertain", "possible");
  $(".error-text", card).textContent = "";
  if (entry.pending) {
    $(".label-name", card).textContent = t("analysing");
    setHidden(card, [".badge", ".confidence", ".legal", ".others", ".evidence", ".feedback"], true);
    return;
  }
  if (entry.error) {
    renderError(entry);
    return;
  }
  setHidden(card, [".badge", ".confidence", ".legal", ".evidence"], false);
  const kind = verdict(record);
  card.classList.add(kind);
  // a possible match names the wildlife category to check (its name and note), not the top label
  const shown = kind === "possible" && record.possible ? { ...record, label: record.possible } : record;
  $(".label-name", card).textContent = labelName(shown.label, record);
  $(".badge", card).textContent = t(kind === "clear" ? "notFlagged" : kind);
  renderConfidence(card, record.score);
  $(".legal", card).textContent = legalNote(shown);
  renderOthers(card, record);
  renderHeatmap(entry);
  renderFeedback(entry);
  renderEvidence(card, evidenceRows(entry));
}

// flagged: a wildlife label passed its threshold; possible: a wildlife score in the band just
// below its threshold (record.possible) or a wildlife label on top but below it;
// uncertain: the model does not know; clear: a look-alike or ordinary goods.
function verdict(record) {
  if (record.flagged) return "flagged";
  if (record.possible) return "possible";
  if (record.label === "uncertain") return "uncertain";
  const category = state.labels && state.labels.categories.find((c) => c.id === record.label);
  return category && category.group === "wildlife" ? "possible" : "clear";
}

function renderError(entry) {
  const card = entry.card;
  const reasons = t("reasons");
  setHidden(card, [".badge", ".confidence", ".legal", ".others", ".feedback"], true);
  $(".heatmap-row", card).hidden = true;
  $(".overlay", card).hidden = true;
  $(".label-name", card).textContent = t("errorTitle");
  const reason = entry.error.reason === "unauthorized" ? t("keyInvalid") : reasons[entry.error.reason] || reasons.other;
  // the server's own words are English: beside the reason in English, in the evidence otherwise
  const inline = entry.error.message && state.lang === "en" ? ` (${entry.error.message})` : "";
  $(".error-text", card).textContent = reason + inline;
  const rows = entry.record ? evidenceRows(entry) : [["file", entry.file.name]];
  if (entry.error.message && state.lang !== "en") rows.push(["serverMessage", entry.error.message]);
  $(".evidence", card).hidden = false;
  renderEvidence(card, rows);
}

// --- feedback: "correct", or "wrong" and the right category (POST /v1/results/{id}/feedback)

function wireFeedback(entry) {
  const card = entry.card;
  $(".fb-correct", card).addEventListener("click", () => sendFeedback(entry, "correct", shownLabel(entry.record)));
  $(".fb-wrong", card).addEventListener("click", () => {
    entry.feedbackOpen = true;
    renderFeedback(entry);
    $(".fb-label", card).focus();
  });
  $(".fb-send", card).addEventListener("click", () => sendFeedback(entry, "wrong", $(".fb-label", card).value));
}

// the category the card names: a possible match names the wildlife category to check
function shownLabel(record) {
  return verdict(record) === "possible" && record.possible ? record.possible : record.label;
}

async function sendFeedback(entry, verdictGiven, label) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const body = JSON.stringify({ verdict: verdictGiven, label: label || null });
  const url = `/v1/results/${encodeURIComponent(entry.record.result_id)}/feedback`;
  const response = await fetch(url, { method: "POST", headers, body }).catch(() => null);
  entry.feedbackFailed = !(response && response.ok);
  if (!entry.feedbackFailed) {
    const saved = await response.json();
    entry.feedback = { verdict: saved.verdict, label: saved.label, given_at: saved.given_at };
    entry.feedbackOpen = false;
  }
  renderFeedback(entry);
}

function renderFeedback(entry) {
  const card = entry.card;
  const box = $(".feedback", card);
  box.hidden = !(entry.record && entry.record.result_id && entry.record.label);
  if (box.hidden) return;
  $(".fb-question", card).textContent = t("fbQuestion");
  $(".fb-correct", card).textContent = t("fbCorrect");
  $(".fb-wrong", card).textContent = t("fbWrong");
  $(".fb-pick-label", card).textContent = t("fbPick");
  $(".fb-send", card).textContent = t("fbSend");
  $(".fb-pick", card).hidden = !entry.feedbackOpen;
  $(".fb-correct", card).hidden = entry.record.label === "uncertain" && !entry.record.possible;
  const select = $(".fb-label", card);
  const chosen = select.value;
  const categories = ((state.labels && state.labels.categories) || []).filter((c) => c.id !== entry.record.label);
  select.replaceChildren(
    ...categories
      .map((c) => [c.id, c.names[state.lang] || c.names.en])
      .sort((a, b) => a[1].localeCompare(b[1], state.lang))
      .map(([id, name]) => new Option(name, id)),
  );
  if (chosen) select.value = chosen;
  const fb = entry.feedback;
  let status = "";
  if (entry.feedbackFailed) status = t("fbFailed");
  else if (fb && fb.verdict === "correct") status = t("fbSaved");
  else if (fb) status = format(t("fbSavedWrong"), { label: labelName(fb.label) });
  $(".fb-status", card).textContent = status;
  card.dataset.feedback = fb ? fb.verdict : "";
}

function setHidden(card, selectors, hidden) {
  for (const selector of selectors) $(selector, card).hidden = hidden;
}

function renderConfidence(card, score) {
  const percent = Math.round((score || 0) * 1000) / 10;
  $(".conf-label", card).textContent = t("confidence");
  $(".fill", card).style.width = `${Math.max(0, Math.min(100, percent))}%`;
  $(".conf-value", card).textContent = `${percent.toLocaleString(state.lang)} %`;
}

function renderOthers(card, record) {
  if (record.matched_by === "reference" && record.head) {
    // a gallery decided: the scores are the model's own view, not alternatives to the decision
    const head = record.head;
    const pct = (Math.round((head.score || 0) * 1000) / 10).toLocaleString(state.lang);
    $(".others", card).hidden = false;
    $(".others", card).textContent = `${t("modelAlone")}: ${labelName(head.label)} ${pct} %`;
    return;
  }
  const others = Object.entries(record.scores || {})
    .filter(([label]) => label !== record.label)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([label, p]) => `${labelName(label)} ${(Math.round(p * 1000) / 10).toLocaleString(state.lang)} %`);
  $(".others", card).hidden = !others.length;
  $(".others", card).textContent = others.length ? `${t("others")}: ${others.join(" · ")}` : "";
}

function renderHeatmap(entry) {
  const card = entry.card;
  const explanation = entry.record && entry.record.explanation;
  const overlay = $(".overlay", card);
  $(".heatmap-row", card).hidden = !explanation;
  if (!explanation) {
    overlay.hidden = true;
    return;
  }
  const [x0, y0, x1, y1] = explanation.region;
  overlay.src = explanation.overlay_png;
  Object.assign(overlay.style, {
    left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%`,
  });
  overlay.hidden = !entry.showHeatmap;
  card.classList.toggle("heatmap-on", entry.showHeatmap);
  $(".toggle-heatmap", card).textContent = t(entry.showHeatmap ? "hideHeatmap" : "showHeatmap");
  $(".toggle-heatmap", card).setAttribute("aria-pressed", String(entry.showHeatmap));
  $(".heatmap-help", card).textContent = t("heatmapHelp");
}

function evidenceRows(entry) {
  const r = entry.record;
  const model = r.model || {};
  const rows = [
    ["file", r.path], ["sha256", r.sha256], ["pdq", r.pdq],
    ["size", r.width ? `${r.width} × ${r.height}` : null],
    ["model", model.name ? `${model.name} ${model.version}` : null], ["modelSha", model.sha256],
    ["time", r.received_at], ["resultId", r.result_id],
    ["caseId", r.case_id], ["sourceUrl", r.source_url], ["note", r.note],
    ["decidedBy", decidedBy(r)],
    ["references", (r.references || []).map((ref) => ref.sha256).join(" ")],
  ];
  return rows.filter(([, value]) => value !== null && value !== undefined && value !== "");
}

// what made the decision: the model, or a reference gallery (with its version and evidence)
function decidedBy(r) {
  if (!r.label) return null;
  const g = r.gallery;
  if (r.matched_by !== "reference" || !g) return t("byModel");
  return `${t("byGallery")}`
    .replace("{category}", labelName(g.category))
    .replace("{version}", g.version)
    .replace("{similarity}", Number(g.similarity).toFixed(3))
    .replace("{threshold}", Number(g.threshold).toFixed(3));
}

function renderEvidence(card, rows) {
  $(".evidence-title", card).textContent = t("evidence");
  const list = $("dl", card);
  list.replaceChildren();
  for (const [key, value] of rows) {
    const term = document.createElement("dt");
    term.textContent = t(key);
    const detail = document.createElement("dd");
    detail.textContent = String(value);
    detail.className = `ev-${key}`;
    list.append(term, detail);
  }
}

function renderSummary() {
  const done = state.entries.filter((e) => e.record && !e.error);
  const flagged = done.filter((e) => e.record.flagged).length;
  $("#summary").textContent = done.length ? format(t("summary"), { n: done.length, f: flagged }) : "";
  $("#empty").hidden = state.entries.length > 0;
  fillPrintHeader();
}

// --- report ------------------------------------------------------------------------------

function reportRecords() {
  return state.entries
    .slice()
    .reverse()
    .filter((e) => !e.pending)
    .map((e) => {
      if (e.record) {
        const copy = { ...e.record, label_name: labelName(e.record.label, e.record), legal_note: legalNote(e.record), lang: state.lang };
        if (e.feedback) copy.feedback = e.feedback;
        if (copy.explanation) {
          copy.explanation = { ...copy.explanation };
          delete copy.explanation.overlay_png; // the grid is kept; the picture can be redrawn from it
        }
        return copy;
      }
      return { path: e.file.name, error: e.error, ...(e.fields || {}) };
    });
}

function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`; // no formulas when opened in a spreadsheet
  return `"${text.replace(/"/g, '""')}"`;
}

function toCsv(records) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const r of records) {
    const model = r.model || {};
    const error = r.error || {};
    const row = {
      ...r, file: r.path, model_name: model.name, model_version: model.version, model_sha256: model.sha256,
      model_runtime: model.runtime, model_precision: model.precision,
      error_reason: error.reason, error_message: error.message,
      gallery_category: (r.gallery || {}).category, gallery_version: (r.gallery || {}).version,
      gallery_similarity: (r.gallery || {}).similarity, gallery_threshold: (r.gallery || {}).threshold,
      references: (r.references || []).map((ref) => ref.sha256).join(" "),
      feedback_verdict: (r.feedback || {}).verdict, feedback_label: (r.feedback || {}).label,
    };
    lines.push(CSV_COLUMNS.map((c) => csvCell(row[c])).join(","));
  }
  return "\ufeff" + lines.join("\r\n") + "\r\n"; // BOM: spreadsheets then read UTF-8 correctly
}

function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function reportName(extension) {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const caseId = $("#case-id").value.trim().replace(/[^\w.-]+/g, "_").slice(0, 60);
  return `wildscan-report${caseId ? "-" + caseId : ""}-${stamp}.${extension}`;
}

function downloadCsv() {
  download(reportName("csv"), toCsv(reportRecords()), "text/csv;charset=utf-8");
}

function downloadJson() {
  const report = {
    tool: "wildscan", generated_at: new Date().toISOString(), lang: state.lang, model: state.model,
    case_id: $("#case-id").value.trim() || null, results: reportRecords(),
  };
  download(reportName("json"), JSON.stringify(report, null, 2), "application/json");
}

function fillPrintHeader() {
  $("#print-time").textContent = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
  const caseId = $("#case-id").value.trim();
  $("#print-case").textContent = caseId ? `${t("caseId")}: ${caseId}` : "";
}

function printReport() {
  fillPrintHeader();
  window.print();
}

function clearResults() {
  for (const entry of state.entries) URL.revokeObjectURL(entry.objectUrl);
  state.entries = [];
  $("#results").replaceChildren($("#empty"));
  renderSummary();
}

// --- wiring ------------------------------------------------------------------------------

function wireDropZone() {
  const zone = $("#drop");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    addFiles(event.dataTransfer.files);
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("#file-input").click();
  });
}

function init() {
  $("#api-key").value = apiKey();
  $("#key-form").addEventListener("submit", saveKey);
  $("#lang").addEventListener("change", (event) => applyLanguage(event.target.value));
  $("#file-input").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = "";
  });
  $("#download-csv").addEventListener("click", downloadCsv);
  $("#download-json").addEventListener("click", downloadJson);
  $("#print").addEventListener("click", printReport);
  window.addEventListener("beforeprint", fillPrintHeader);
  $("#clear").addEventListener("click", clearResults);
  wireDropZone();
  const preferred = sessionStorage.getItem(LANG_STORAGE) || (navigator.language || "en").slice(0, 2);
  applyLanguage(preferred);
  loadServerInfo();
}

document.addEventListener("DOMContentLoaded", init);
