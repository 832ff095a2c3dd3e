/* The alert rules page: times of the audit in the city's time zone (the rest is server-rendered). */
"use strict";
for (const cell of document.querySelectorAll("td.ms")) { cell.textContent = SN.time(Number(cell.dataset.ms)); }
