"""A layout check run inside Chromium on a report page: every plot drawn, no text of a plot on another, nothing
cut off, no page wider than the screen. The page answers with a list of problems (empty when it reads well)."""

LAYOUT_CHECK = """(() => {
  const problems = [];
  const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 &&
                            a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const plots = [...document.querySelectorAll('svg.plot')];
  for (const plot of plots) {
    const frame = plot.getBoundingClientRect();
    if (frame.width < 200) problems.push(`${plot.id}: drawn ${Math.round(frame.width)} px wide`);
    const lines = [...plot.querySelectorAll('polyline.series')].filter(p => p.points.numberOfItems >= 2);
    if (lines.length === 0) problems.push(`${plot.id}: empty (no line of two points or more)`);
    const texts = [...plot.querySelectorAll('text')].filter(t => t.textContent.trim())
      .map(t => ({text: t.textContent, cls: t.getAttribute('class') || '', box: t.getBoundingClientRect()}));
    const ticks = texts.filter(t => t.cls.startsWith('tick'));
    if (ticks.filter(t => t.cls === 'tick x').length < 2 || ticks.filter(t => t.cls === 'tick y').length < 2)
      problems.push(`${plot.id}: fewer than two ticks on an axis`);
    for (let i = 0; i < texts.length; i++) {
      const one = texts[i].box;
      if (one.left < frame.left - 0.5 || one.right > frame.right + 0.5 || one.top < frame.top - 0.5 ||
          one.bottom > frame.bottom + 0.5)
        problems.push(`${plot.id}: "${texts[i].text}" is cut off`);
      for (let j = i + 1; j < texts.length; j++)
        if (overlap(one, texts[j].box)) problems.push(`${plot.id}: "${texts[i].text}" overlaps "${texts[j].text}"`);
    }
  }
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 1)
    problems.push(`the page is ${page.scrollWidth} px wide on a ${window.innerWidth} px screen`);
  const verdict = document.querySelector('#bottleneck');
  return {plots: plots.length, problems, verdict: verdict ? verdict.textContent : null,
          ticks: [...document.querySelectorAll('svg.plot text.tick')].map(t => t.textContent)};
})()"""
