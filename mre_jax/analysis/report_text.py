"""The fixed text of report.html: its style sheet and the explanation of
what the numbers mean, for readers who know nothing of the model."""

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0
 auto;max-width:1060px;padding:24px;color:#222;line-height:1.45}
h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555}.meta b{color:#222}table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:5px 9px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right}td.top{font-weight:bold}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;
 margin-right:5px}.timeline{max-width:100%;border:1px solid #eee}
.cards{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #ddd;
 border-radius:6px;padding:8px;width:340px}.card img{height:150px;width:auto;
 max-width:160px;margin-right:4px}.caption{font-size:.92em}
.small{font-size:.85em;color:#555}.note{background:#f7f7f2;
 border-left:4px solid #c9b458;padding:8px 12px}
"""


EXPLANATION = """
<ul>
<li>The program looks for faces in the analysed frames of the input and
shows each face to an emotion-recognition model. For every face and frame
the model gives a <b>probability</b> for each of the {n} emotions
({names}); they add up to 100&nbsp;%. A high value means the expression
looks most like that emotion <i>to the model</i>.</li>
<li>Single frames are noisy, so the <b>label</b> of a face is smoothed over
neighbouring frames before it is counted. <b>Share of time</b> is the part
of the time a face was visible during which that label was shown;
the <b>dominant emotion</b> is the one with the largest share.</li>
<li><b>Valence</b> says how positive the expression looks, from -1 to
+1: the probability of happy minus that of the strongest negative emotion
(angry, disgust, fear or sad); surprise and neutral do not count. It is
averaged over the frames of a face or of a task.</li>
<li>Faces are numbered as they are found; a person who leaves the picture
and comes back may be counted as a new face.</li>
<li>The model reads facial expressions, not feelings: a smile is not proof
of happiness. It is less reliable for faces that are small, turned away,
badly lit or partly covered. Treat the results as a guide for where to
look, not as a measurement.</li>
</ul>
"""
