import { LabIcon } from '@jupyterlab/ui-components';

import nbappsSvg from '../style/icons/nbapps.svg';
import parametersSvg from '../style/icons/parameters.svg';
import publishSvg from '../style/icons/publish.svg';
import widgetSvg from '../style/icons/widget.svg';

export const nbappsIcon = new LabIcon({ name: 'nbapps:app', svgstr: nbappsSvg });
export const widgetTagIcon = new LabIcon({ name: 'nbapps:widget-tag', svgstr: widgetSvg });
export const parametersTagIcon = new LabIcon({
  name: 'nbapps:parameters-tag',
  svgstr: parametersSvg
});
export const publishIcon = new LabIcon({ name: 'nbapps:publish', svgstr: publishSvg });
